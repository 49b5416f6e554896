//! `every sample` and `retry` actions, weight references and `record` targets.

use crate::front::ast::{self, ExprKind, Stmt};
use crate::front::diag::{Diagnostic, suggestion_help};
use crate::ir::train::*;
use crate::ir::{PopId, ProjId};

use super::{TrainLowerer, const_number, named_args};

impl TrainLowerer<'_, '_, '_> {
    pub(super) fn lower_actions(&mut self, body: &ast::Block) -> Vec<HookAction> {
        let mut actions = Vec::new();
        for stmt in &body.stmts {
            match stmt {
                Stmt::Call { call, span } => {
                    let ExprKind::Call { func, args } = &call.kind else { continue };
                    if func.name != "normalize" {
                        let help =
                            suggestion_help(&func.name, ["normalize"], "hooks call `normalize(weights(a, b), total = 78)`".to_string());
                        self.sink.push(
                            Diagnostic::error(
                                "snn::names::unknown_function",
                                format!("unknown hook action `{}`", func.name),
                                func.span,
                                "not an action",
                            )
                            .with_help(help),
                        );
                        continue;
                    }
                    let projection = args.first().and_then(|a| self.weights_ref(&a.value));
                    let total = named_args(args).get("total").and_then(|e| const_number(e)).map(|v| v.0);
                    match (projection, total) {
                        (Some(projection), Some(total)) => actions.push(HookAction::NormalizeColumns { projection, total }),
                        (_, None) => self.sink.push(
                            Diagnostic::error("snn::call::missing_argument", "`normalize` needs `total`", *span, "no total")
                                .with_help("write `normalize(weights(pixels, exc), total = 78)`"),
                        ),
                        _ => {}
                    }
                }
                Stmt::Assign { target, op, value, span } => {
                    let name = &target[0];
                    let Some(index) = self.module.params.iter().position(|(n, _)| *n == name.name) else {
                        let help = suggestion_help(
                            &name.name,
                            self.module.params.iter().map(|(n, _)| n.as_str()),
                            "declare it in the network with `param`".to_string(),
                        );
                        self.sink.push(
                            Diagnostic::error(
                                "snn::names::unknown",
                                format!("`{}` is not a network parameter", name.name),
                                name.span,
                                "cannot assign",
                            )
                            .with_help(help),
                        );
                        continue;
                    };
                    let Some((by, _)) = const_number(value) else {
                        self.sink.push(
                            Diagnostic::error("snn::types::not_constant", "hooks assign numbers", value.span, "not a number")
                                .with_help("for example `intensity += 1`"),
                        );
                        continue;
                    };
                    let param = index as u32;
                    match op {
                        ast::AssignOp::Set => actions.push(HookAction::SetParam { param, value: by }),
                        ast::AssignOp::Add => actions.push(HookAction::AddToParam { param, by }),
                        ast::AssignOp::Sub => actions.push(HookAction::AddToParam { param, by: -by }),
                        ast::AssignOp::Mul => self.sink.push(
                            Diagnostic::error(
                                "snn::types::statement_not_allowed",
                                "hooks set (`=`) or add to (`+=`, `-=`) parameters",
                                *span,
                                "`*=` here",
                            )
                            .with_help("write `x = value` or `x += step`"),
                        ),
                    }
                }
                Stmt::Let(let_) => self.sink.push(
                    Diagnostic::error(
                        "snn::types::statement_not_allowed",
                        "`let` is not available in hooks",
                        let_.span,
                        "not allowed here",
                    )
                    .with_help("hooks contain `normalize(...)` calls and parameter assignments"),
                ),
                Stmt::Deliver { span, .. } => self.sink.push(
                    Diagnostic::error("snn::types::statement_not_allowed", "`deliver` belongs in a synapse", *span, "not allowed here")
                        .with_help("hooks contain `normalize(...)` calls and parameter assignments"),
                ),
            }
        }
        actions
    }

    /// `weights(source, target)`: the projection between two layers.
    pub(super) fn weights_ref(&mut self, expr: &ast::Expr) -> Option<ProjId> {
        let ExprKind::Call { func, args } = &expr.kind else {
            self.sink.push(
                Diagnostic::error(
                    "snn::train::bad_weights",
                    "name the weights as `weights(source, target)`",
                    expr.span,
                    "not a weights reference",
                )
                .with_help("for example `weights(pixels, exc)`"),
            );
            return None;
        };
        let names: Vec<&ast::Ident> = args.iter().filter_map(|a| a.value.as_name()).collect();
        if func.name != "weights" || names.len() != 2 {
            self.sink.push(
                Diagnostic::error(
                    "snn::train::bad_weights",
                    "name the weights as `weights(source, target)`",
                    expr.span,
                    "not a weights reference",
                )
                .with_help("for example `weights(pixels, exc)`"),
            );
            return None;
        }
        let found =
            self.module.projections.iter().position(|p| {
                self.module.source_name(&p.source) == names[0].name && self.module.population(p.target).name == names[1].name
            });
        if found.is_none() {
            self.sink.push(
                Diagnostic::error(
                    "snn::train::bad_weights",
                    format!("there is no connection `{} -> {}`", names[0].name, names[1].name),
                    expr.span,
                    "no such connection",
                )
                .with_help("name the source and target of a `connect` statement"),
            );
        }
        found.map(|i| ProjId(i as u32))
    }

    pub(super) fn lower_record(&mut self, path: &[ast::Ident]) -> Option<(PopId, Option<crate::ir::VarId>)> {
        let pop = self.population(&path[0])?;
        if path.len() == 1 {
            return Some((pop, None));
        }
        let name: Vec<&str> = path[1..].iter().map(|p| p.name.as_str()).collect();
        let name = name.join(".");
        let population = self.module.population(pop);
        match population.var_by_name(&name) {
            Some(var) => Some((pop, Some(var))),
            None => {
                let help =
                    suggestion_help(&name, population.vars.iter().map(|v| v.name.as_str()), "name a state of the population".to_string());
                self.sink.push(
                    Diagnostic::error(
                        "snn::names::unknown",
                        format!("`{}` has no state `{name}`", population.name),
                        path[1].span,
                        "no such state",
                    )
                    .with_help(help),
                );
                None
            }
        }
    }
}
