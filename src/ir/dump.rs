//! The stable text dump of a module (`snnc emit ir`), reviewed in golden tests.

use std::fmt::{self, Write};

use crate::ir::{EncoderKind, Module, Population, PortId, Update, VarId, VarKind, fmt_f64};

fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(", "))
}

fn write_updates(out: &mut String, title: &str, pop: &Population, updates: &[Update]) {
    if updates.is_empty() {
        return;
    }
    let names = |v: VarId| pop.vars[v.0 as usize].name.clone();
    let ports = |p: PortId| format!("in.{}", pop.ports[p.0 as usize]);
    let _ = writeln!(out, "    {title}:");
    for update in updates {
        let _ = writeln!(out, "      {} <- {}", names(update.var), pop.exprs.display(update.value, &names, &ports));
    }
}

impl fmt::Display for Module {
    /// The stable text dump of `snnc emit ir`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let _ = writeln!(out, "network {}", self.network);
        let _ = writeln!(out, "  dt = {} s, steps = {}, rest steps = {}", fmt_f64(self.dt), self.steps, self.rest_steps);
        for (index, (name, value)) in self.params.iter().enumerate() {
            let _ = writeln!(out, "  net.p{index} {name} = {}", fmt_f64(*value));
        }
        let net_names = |v: VarId| format!("x{}", v.0);
        let no_ports = |p: PortId| format!("port{}", p.0);
        for (index, input) in self.inputs.iter().enumerate() {
            let kind = match input.kind {
                EncoderKind::SpikeWhen => "spike when",
                EncoderKind::SpikeAt => "spike at",
                EncoderKind::Current => "current",
            };
            let _ = writeln!(
                out,
                "  input{index} {} {} = {}: {kind} {}{}",
                input.name,
                shape_text(&input.shape),
                input.encoder,
                input.exprs.display(input.value, &net_names, &no_ports),
                if input.per_step { " (data: the step's bin of events)" } else { "" }
            );
        }
        for (index, pop) in self.populations.iter().enumerate() {
            let _ = writeln!(out, "  pop{index} {} {} = {}", pop.name, shape_text(&pop.shape), pop.neuron);
            for var in &pop.vars {
                match &var.kind {
                    VarKind::State { init, persistent, frozen_in_eval } => {
                        let flags = match (persistent, frozen_in_eval) {
                            (true, true) => " persistent frozen in eval",
                            (true, false) => " persistent",
                            (false, true) => " frozen in eval",
                            (false, false) => "",
                        };
                        let _ = writeln!(out, "    state {} = {init}{flags}", var.name);
                    }
                    VarKind::Param { value, trainable, per_neuron, scale } => {
                        let mut flags = String::new();
                        if *trainable {
                            flags.push_str(" trainable");
                            if *scale != 1.0 {
                                let _ = write!(flags, " (stepped in units of {scale})");
                            }
                        }
                        if *per_neuron {
                            flags.push_str(" per_neuron");
                        }
                        let _ = writeln!(out, "    param {}{flags} = {value}", var.name);
                    }
                }
            }
            for port in &pop.ports {
                let _ = writeln!(out, "    port {port}");
            }
            let names = |v: VarId| pop.vars[v.0 as usize].name.clone();
            let ports = |p: PortId| format!("in.{}", pop.ports[p.0 as usize]);
            for jump in &pop.input_jumps {
                let additive = if jump.additive { " (additive)" } else { "" };
                write_updates(&mut out, &format!("on in.{}{additive}", pop.ports[jump.port.0 as usize]), pop, &jump.updates);
            }
            if !pop.dynamics.is_empty() {
                let _ = writeln!(out, "    dynamics:");
                for (update, integration) in &pop.dynamics {
                    let _ = writeln!(
                        out,
                        "      {} <- {}  [{:?}]",
                        names(update.var),
                        pop.exprs.display(update.value, &names, &ports),
                        integration
                    );
                }
            }
            write_updates(&mut out, "update", pop, &pop.updates);
            if let Some(threshold) = &pop.threshold {
                let _ = writeln!(
                    out,
                    "    spike when {} {} {}",
                    pop.exprs.display(threshold.lhs, &names, &ports),
                    threshold.op.symbol(),
                    pop.exprs.display(threshold.rhs, &names, &ports)
                );
            }
            write_updates(&mut out, "on spike", pop, &pop.on_spike);
            write_updates(&mut out, "after spike", pop, &pop.after_spike);
            if let Some(period) = pop.refractory {
                let _ = writeln!(out, "    refractory {} s", pop.exprs.display(period, &names, &ports));
            }
            for (name, value) in &pop.observables {
                let _ = writeln!(out, "    observable {name} = {}", pop.exprs.display(*value, &names, &ports));
            }
        }
        for (index, proj) in self.projections.iter().enumerate() {
            let target = self.population(proj.target);
            let mut flags = String::new();
            if proj.trainable {
                flags.push_str(" trainable");
            } else if proj.synapse.is_some() {
                flags.push_str(" plastic");
            } else {
                flags.push_str(" fixed");
            }
            if proj.shares_one_weight() {
                flags.push_str(" shared");
            }
            if proj.feedback {
                flags.push_str(" feedback");
            }
            if proj.delay_steps > 0 {
                let _ = write!(flags, " delay {}", proj.delay_steps);
            }
            let _ = writeln!(
                out,
                "  proj{index} {} -> {}.{} {:?} weights {} init {}{flags}",
                self.source_label(&proj.source),
                target.name,
                target.ports[proj.port.0 as usize],
                proj.connectivity,
                shape_text(&proj.weight_shape),
                proj.init
            );
            if let Some(synapse) = &proj.synapse {
                let names = |v: VarId| {
                    let i = v.0 as usize;
                    if i < synapse.vars.len() { synapse.vars[i].name.clone() } else { synapse.traces[i - synapse.vars.len()].0.clone() }
                };
                let ports = |p: PortId| format!("port{}", p.0);
                let delivery = if synapse.conductance { "conductance" } else { "current" };
                let _ = writeln!(out, "    via {} delivers {delivery}", synapse.name);
                for (name, tau) in &synapse.traces {
                    let _ = writeln!(out, "    trace {name} tau = {} s", fmt_f64(*tau));
                }
                if let Some(value) = synapse.delivers {
                    let _ = writeln!(out, "    on pre: deliver {}", synapse.exprs.display(value, &names, &ports));
                }
                for (title, updates) in [("on pre", &synapse.on_pre), ("on post", &synapse.on_post)] {
                    for update in updates {
                        let _ =
                            writeln!(out, "    {title}: {} <- {}", names(update.var), synapse.exprs.display(update.value, &names, &ports));
                    }
                }
            }
        }
        if let Some(train) = &self.train {
            crate::ir::train::write_train(&mut out, self, train);
        }
        f.write_str(&out)
    }
}
