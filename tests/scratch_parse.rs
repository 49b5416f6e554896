#[test]
fn scratch() {
    for text in ["neuron A {\n  state v = 0\n  /// doc\n  input i\n}", "neuron A {\n  state v = 0\n  /// doc\n  state i\n}", "neuron A {\n  state v = x\n  /// doc\n  input i\n}", "neuron A {\n  param v = 0\n  /// doc\n  input i\n}"] {
        let (file, diags) = snnc::parse::parse(text);
        for d in &diags.items { eprintln!("{:?}: {} {:?}", text, d.message, d.primary.span); }
        eprintln!("{} items", file.items.len());
    }
}
