//! Loading a file with its imports and building the symbol table of definitions.
//!
//! The standard library is embedded in the binary, so `import std::neurons` works from any
//! directory. Quoted imports are read relative to the importing file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::front::ast::{self, ItemKind, Span};
use crate::front::diag::{Diagnostic, Diagnostics, SourceFile, suggestion_help};
use crate::front::parse::parse;

/// The embedded standard library: module name and source.
pub const STDLIB: [(&str, &str); 4] = [
    ("neurons", include_str!("../../stdlib/neurons.snn")),
    ("synapses", include_str!("../../stdlib/synapses.snn")),
    ("surrogates", include_str!("../../stdlib/surrogates.snn")),
    ("encoders", include_str!("../../stdlib/encoders.snn")),
];

/// A definition with the file it came from.
#[derive(Clone, Debug)]
pub struct Def<T> {
    pub file: usize,
    pub def: T,
    pub span: Span,
}

#[derive(Debug, Default)]
pub struct Program {
    pub files: Vec<Arc<SourceFile>>,
    pub asts: Vec<ast::File>,
    pub neurons: BTreeMap<String, Def<ast::Neuron>>,
    pub synapses: BTreeMap<String, Def<ast::Synapse>>,
    pub surrogates: BTreeMap<String, Def<ast::Surrogate>>,
    pub encoders: BTreeMap<String, Def<ast::Encoder>>,
    /// Networks and train blocks of the main file (file 0) only.
    pub networks: Vec<Def<ast::Network>>,
    pub trains: Vec<Def<ast::Train>>,
    /// Items that failed to parse, with their file: uses of their names report nothing more.
    pub broken: Vec<(usize, ast::Broken)>,
    /// An import failed (reported): names it might have defined are not reported unknown.
    pub import_failed: bool,
}

impl Program {
    /// Whether an item of this keyword and name failed to parse (in any file), or may have: an
    /// import that failed (a syntax error in it, an unknown module, a file that cannot be read)
    /// could have defined any neuron, synapse, surrogate or encoder, so no name is reported
    /// unknown after one.
    pub fn is_broken(&self, keyword: &str, name: &str) -> bool {
        self.import_failed || self.broken.iter().any(|(_, b)| b.keyword == keyword && b.name.as_deref() == Some(name))
    }

    /// Whether the main file has an item of this keyword that failed to parse.
    pub fn main_has_broken(&self, keyword: &str) -> bool {
        self.broken.iter().any(|(file, b)| *file == 0 && b.keyword == keyword)
    }

    pub fn file(&self, index: usize) -> Arc<SourceFile> {
        self.files[index].clone()
    }
}

pub fn load_program(name: &str, text: &str, base_dir: Option<&Path>, diagnostics: &mut Diagnostics) -> Program {
    let mut program = Program::default();
    let mut loaded: Vec<String> = Vec::new();
    load_file(&mut program, &mut loaded, name.to_string(), text.to_string(), base_dir.map(Path::to_path_buf), diagnostics);
    program
}

fn load_file(
    program: &mut Program,
    loaded: &mut Vec<String>,
    name: String,
    text: String,
    base_dir: Option<PathBuf>,
    diagnostics: &mut Diagnostics,
) {
    let file_index = program.files.len();
    let source = Arc::new(SourceFile { name: name.clone(), text });
    program.files.push(source.clone());
    loaded.push(name);
    let (file, mut parse_diagnostics) = parse(&source.text);
    parse_diagnostics.attach(&source);
    diagnostics.extend(parse_diagnostics);
    program.broken.extend(file.broken.iter().map(|b| (file_index, b.clone())));
    program.import_failed |= file.broken.iter().any(|b| b.keyword == "import");
    let mut imports = Vec::new();
    for item in &file.items {
        match &item.kind {
            ItemKind::Import(import) => imports.push(import.clone()),
            ItemKind::Neuron(neuron) => insert(
                &mut program.neurons,
                &neuron.name,
                file_index,
                neuron.clone(),
                item.span,
                "neuron",
                &mut |d| report(diagnostics, &source, d),
                &program.files,
            ),
            ItemKind::Synapse(synapse) => insert(
                &mut program.synapses,
                &synapse.name,
                file_index,
                synapse.clone(),
                item.span,
                "synapse",
                &mut |d| report(diagnostics, &source, d),
                &program.files,
            ),
            ItemKind::Surrogate(surrogate) => insert(
                &mut program.surrogates,
                &surrogate.name,
                file_index,
                surrogate.clone(),
                item.span,
                "surrogate",
                &mut |d| report(diagnostics, &source, d),
                &program.files,
            ),
            ItemKind::Encoder(encoder) => insert(
                &mut program.encoders,
                &encoder.name,
                file_index,
                encoder.clone(),
                item.span,
                "encoder",
                &mut |d| report(diagnostics, &source, d),
                &program.files,
            ),
            ItemKind::Network(network) => {
                if file_index == 0 {
                    program.networks.push(Def { file: file_index, def: network.clone(), span: item.span });
                }
            }
            ItemKind::Train(train) => {
                if file_index == 0 {
                    program.trains.push(Def { file: file_index, def: train.clone(), span: item.span });
                }
            }
        }
    }
    program.asts.push(file);
    for import in imports {
        let (key, text, dir) = if import.quoted {
            let path = base_dir.clone().unwrap_or_default().join(&import.target);
            match std::fs::read_to_string(&path) {
                Ok(text) => (path.display().to_string(), text, path.parent().map(Path::to_path_buf)),
                Err(error) => {
                    report(
                        diagnostics,
                        &source,
                        Diagnostic::error(
                            "snn::import::not_found",
                            format!("cannot read imported file `{}`", import.target),
                            import.span,
                            format!("{error}"),
                        )
                        .with_help(format!("the path is relative to the importing file; looked for {}", path.display())),
                    );
                    program.import_failed = true;
                    continue;
                }
            }
        } else {
            let module = import.target.strip_prefix("std::").unwrap_or("");
            match STDLIB.iter().find(|(name, _)| *name == module) {
                Some((name, text)) => (format!("stdlib/{name}.snn"), text.to_string(), None),
                None => {
                    let candidates: Vec<String> = STDLIB.iter().map(|(name, _)| format!("std::{name}")).collect();
                    let help = suggestion_help(
                        &import.target,
                        candidates.iter().map(String::as_str),
                        format!("the standard library has {}", candidates.join(", ")),
                    );
                    report(
                        diagnostics,
                        &source,
                        Diagnostic::error(
                            "snn::import::unknown_module",
                            format!("unknown module `{}`", import.target),
                            import.span,
                            "no such module",
                        )
                        .with_help(help),
                    );
                    program.import_failed = true;
                    continue;
                }
            }
        };
        if loaded.contains(&key) {
            continue;
        }
        load_file(program, loaded, key, text, dir, diagnostics);
    }
}

#[allow(clippy::too_many_arguments)]
fn insert<T>(
    table: &mut BTreeMap<String, Def<T>>,
    name: &ast::Ident,
    file: usize,
    def: T,
    span: Span,
    what: &str,
    report: &mut impl FnMut(Diagnostic),
    files: &[Arc<SourceFile>],
) {
    if let Some(previous) = table.get(&name.name) {
        let mut diagnostic = Diagnostic::error(
            "snn::names::duplicate_definition",
            format!("{what} `{}` is defined twice", name.name),
            name.span,
            "second definition",
        )
        .with_help(format!("rename one of the two definitions of `{}`", name.name));
        if previous.file == file {
            diagnostic = diagnostic.with_label(previous.span, "first defined here");
        } else {
            diagnostic = diagnostic.with_help(format!(
                "`{}` is already defined in {}; rename this one or drop the import",
                name.name, files[previous.file].name
            ));
        }
        report(diagnostic);
        return;
    }
    table.insert(name.name.clone(), Def { file, def, span });
}

fn report(diagnostics: &mut Diagnostics, source: &Arc<SourceFile>, mut diagnostic: Diagnostic) {
    diagnostic.source = Some(source.clone());
    diagnostics.push(diagnostic);
}
