//! Checking and lowering: resolved AST to [`crate::ir::Module`].
//!
//! One walk does name resolution, unit checking, shape checking and lowering, so that every
//! check sees exactly the values the IR will hold. It never stops at the first problem: each
//! stage records diagnostics and goes on with a placeholder, and the module is returned only
//! when there were no errors.
//!
//! Stages, in order: [`program`] loads the file and its imports and builds the symbol table;
//! [`neuron`] checks every definition (neurons, synapses, surrogates, encoders) once;
//! [`network`] instantiates populations, inputs and projections; [`train`] lowers the
//! training block.

pub mod affine;
pub mod expr;
pub mod network;
pub mod neuron;
pub mod program;
pub mod projection;
pub mod surrogate;
pub mod synapse;
pub mod train;

use std::sync::Arc;

use crate::front::ast::Span;
use crate::front::diag::{Diagnostic, Diagnostics, SourceFile};
use crate::ir::Module;

pub use program::{Program, load_program};

/// Everything the front end produced for one file: diagnostics for all files involved, and
/// the module when there were no errors.
pub struct Outcome {
    pub program: Program,
    pub module: Option<Module>,
    /// Where each IR entity was declared, for diagnostics raised after lowering.
    pub source_map: SourceMap,
    pub diagnostics: Diagnostics,
}

/// The side table from IR entities to the spans (in the main file) that declared them; the IR
/// itself carries no spans. Indexed like `Module::inputs`, `populations`, `projections`.
#[derive(Debug, Default)]
pub struct SourceMap {
    pub inputs: Vec<Span>,
    pub populations: Vec<Span>,
    pub projections: Vec<Span>,
}

/// Where diagnostics go while one item is being checked: each diagnostic is attached to the
/// file of the item that produced it.
pub struct Sink<'a> {
    pub diagnostics: &'a mut Diagnostics,
    pub file: Arc<SourceFile>,
    /// The file being checked, to tell imported files from it.
    pub main: Arc<SourceFile>,
    /// When false, diagnostics are dropped (instantiating a definition that was already
    /// checked on its own).
    pub enabled: bool,
}

impl Sink<'_> {
    pub fn push(&mut self, mut diagnostic: Diagnostic) {
        // Warnings about the embedded standard library are ours to act on, not the user's;
        // they show when a stdlib file is checked directly (file 0 then has the same name).
        let imported_stdlib = self.file.name.starts_with("stdlib/") && !Arc::ptr_eq(&self.file, &self.main);
        if self.enabled && (diagnostic.is_error() || !imported_stdlib) {
            diagnostic.source = Some(self.file.clone());
            self.diagnostics.push(diagnostic);
        }
    }
}

/// Checks a source text named `name` (imports resolved against `base_dir`) and lowers it.
pub fn compile(name: &str, text: &str, base_dir: Option<&std::path::Path>) -> Outcome {
    let mut diagnostics = Diagnostics::default();
    let program = load_program(name, text, base_dir, &mut diagnostics);
    neuron::check_definitions(&program, &mut diagnostics);
    let mut source_map = SourceMap::default();
    let mut module = network::lower_network(&program, &mut diagnostics, &mut source_map);
    if let Some(module) = module.as_mut() {
        module.train = train::lower_train(&program, module, &source_map, &mut diagnostics);
    } else {
        train::check_train_without_network(&program, &mut diagnostics);
    }
    // The validator runs on every module lowering produces (and again after `--set`): an
    // invariant broken here is a compiler bug, reported rather than handed to an engine.
    let invalid = match (&module, diagnostics.has_errors()) {
        (Some(lowered), false) => crate::ir::validate::validate(lowered.clone()).err(),
        _ => None,
    };
    if let Some(error) = invalid {
        let span = program.networks.first().map_or(Span::new(0, 0), |n| n.span);
        let mut sink = Sink { diagnostics: &mut diagnostics, file: program.file(0), main: program.file(0), enabled: true };
        sink.push(
            Diagnostic::error(
                "snn::internal::invalid_ir",
                format!("internal error: the lowered model breaks an IR invariant: {error}"),
                span,
                "here",
            )
            .with_help("this is a bug in snnc, not in the model; please report it with this file"),
        );
    }
    let module = if diagnostics.has_errors() { None } else { module };
    Outcome { program, module, source_map, diagnostics }
}
