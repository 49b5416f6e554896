//! Physical units: exact SI dimension exponents plus a power-of-ten scale.
//!
//! Unit algebra returns plain results; callers attach spans. Every unit carries the text the
//! user would write for it (`mV/ms`), built from the names in the source, so messages never
//! print SI base-unit soup.

use std::fmt;

use crate::front::ast::UnitExpr;

/// Exponents of (s, m, kg, A, K, mol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Dim(pub [i8; 6]);

impl Dim {
    pub const NONE: Dim = Dim([0; 6]);
    pub const TIME: Dim = Dim([1, 0, 0, 0, 0, 0]);

    /// The dimension of a product (exponents add). Not `std::ops::Mul`: dimensions are
    /// combined only through [`Unit`]'s methods, which also track the scale.
    #[allow(clippy::should_implement_trait)]
    pub fn mul(self, other: Dim) -> Dim {
        let mut out = [0; 6];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.0[i].saturating_add(other.0[i]);
        }
        Dim(out)
    }

    pub fn powi(self, power: i32) -> Dim {
        let mut out = [0; 6];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = (i32::from(self.0[i]) * power).clamp(-100, 100) as i8;
        }
        Dim(out)
    }

    pub fn inv(self) -> Dim {
        self.powi(-1)
    }

    pub fn is_none(self) -> bool {
        self == Dim::NONE
    }
}

/// A unit: dimension, decimal scale (value in SI = value * 10^scale) and the user's spelling.
#[derive(Clone, Debug)]
pub struct Unit {
    pub dim: Dim,
    pub scale: i32,
    pub text: String,
}

impl PartialEq for Unit {
    /// Units are the same quantity kind when their dimensions agree; scales are folded into
    /// constants during lowering, so `ms` and `s` mix freely.
    fn eq(&self, other: &Unit) -> bool {
        self.dim == other.dim
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Unit {
    pub fn none() -> Unit {
        Unit { dim: Dim::NONE, scale: 0, text: "1".to_string() }
    }

    pub fn is_none(&self) -> bool {
        self.dim.is_none()
    }

    pub fn time_ms() -> Unit {
        Unit { dim: Dim::TIME, scale: -3, text: "ms".to_string() }
    }

    pub fn hz() -> Unit {
        Unit { dim: Dim::TIME.inv(), scale: 0, text: "Hz".to_string() }
    }

    pub fn is_time(&self) -> bool {
        self.dim == Dim::TIME
    }

    /// The product; the spelling drops dimensionless factors (`1*mV` is `mV`).
    pub fn mul(&self, other: &Unit) -> Unit {
        let dim = self.dim.mul(other.dim);
        let text = if dim.is_none() {
            "1".to_string()
        } else if self.is_none() {
            other.text.clone()
        } else if other.is_none() {
            self.text.clone()
        } else {
            format!("{}*{}", wrap(&self.text, false), wrap(&other.text, false))
        };
        Unit { dim, scale: self.scale + other.scale, text }
    }

    pub fn div(&self, other: &Unit) -> Unit {
        let dim = self.dim.mul(other.dim.inv());
        let text = if dim.is_none() {
            "1".to_string()
        } else if other.is_none() {
            self.text.clone()
        } else {
            format!("{}/{}", wrap(&self.text, false), wrap(&other.text, true))
        };
        Unit { dim, scale: self.scale - other.scale, text }
    }

    pub fn powi(&self, power: i32) -> Unit {
        let dim = self.dim.powi(power);
        let text = match (dim.is_none(), power) {
            (true, _) => "1".to_string(),
            (false, 1) => self.text.clone(),
            (false, _) => format!("{}^{}", wrap(&self.text, true), power),
        };
        Unit { dim, scale: self.scale.saturating_mul(power), text }
    }

    /// The factor that converts a value written in this unit into SI.
    pub fn factor(&self) -> f64 {
        10f64.powi(self.scale)
    }
}

fn wrap(text: &str, strict: bool) -> String {
    let needs = if strict { text.contains(['*', '/', '^']) } else { text.contains('/') };
    if needs { format!("({text})") } else { text.to_string() }
}

/// Looks up a unit symbol of the grammar's vocabulary.
pub fn named(name: &str) -> Option<Unit> {
    const S: Dim = Dim([1, 0, 0, 0, 0, 0]);
    const M: Dim = Dim([0, 1, 0, 0, 0, 0]);
    const KG: Dim = Dim([0, 0, 1, 0, 0, 0]);
    const AMP: Dim = Dim([0, 0, 0, 1, 0, 0]);
    const KELVIN: Dim = Dim([0, 0, 0, 0, 1, 0]);
    const MOL: Dim = Dim([0, 0, 0, 0, 0, 1]);
    const VOLT: Dim = Dim([-3, 2, 1, -1, 0, 0]);
    const OHM: Dim = Dim([-3, 2, 1, -2, 0, 0]);
    const SIEMENS: Dim = Dim([3, -2, -1, 2, 0, 0]);
    const FARAD: Dim = Dim([4, -2, -1, 2, 0, 0]);
    const HERTZ: Dim = Dim([-1, 0, 0, 0, 0, 0]);
    let (dim, scale) = match name {
        "1" => (Dim::NONE, 0),
        "s" => (S, 0),
        "ms" => (S, -3),
        "us" => (S, -6),
        "ns" => (S, -9),
        "ps" => (S, -12),
        "Hz" => (HERTZ, 0),
        "kHz" => (HERTZ, 3),
        "MHz" => (HERTZ, 6),
        "V" => (VOLT, 0),
        "mV" => (VOLT, -3),
        "uV" => (VOLT, -6),
        "kV" => (VOLT, 3),
        "A" => (AMP, 0),
        "mA" => (AMP, -3),
        "uA" => (AMP, -6),
        "nA" => (AMP, -9),
        "pA" => (AMP, -12),
        "ohm" => (OHM, 0),
        "kohm" => (OHM, 3),
        "Mohm" => (OHM, 6),
        "Gohm" => (OHM, 9),
        "S" => (SIEMENS, 0),
        "mS" => (SIEMENS, -3),
        "uS" => (SIEMENS, -6),
        "nS" => (SIEMENS, -9),
        "pS" => (SIEMENS, -12),
        "F" => (FARAD, 0),
        "mF" => (FARAD, -3),
        "uF" => (FARAD, -6),
        "nF" => (FARAD, -9),
        "pF" => (FARAD, -12),
        "m" => (M, 0),
        "cm" => (M, -2),
        "mm" => (M, -3),
        "um" => (M, -6),
        "nm" => (M, -9),
        "km" => (M, 3),
        "kg" => (KG, 0),
        "g" => (KG, -3),
        "mg" => (KG, -6),
        "K" => (KELVIN, 0),
        "mol" => (MOL, 0),
        "mmol" => (MOL, -3),
        _ => return None,
    };
    Some(Unit { dim, scale, text: name.to_string() })
}

/// Evaluates a written unit. Unknown symbols cannot occur: the grammar only accepts the
/// vocabulary of [`named`].
pub fn eval(unit: &UnitExpr) -> Unit {
    let mut out = Unit::none();
    for factor in &unit.factors {
        let base = named(&factor.name).unwrap_or_else(Unit::none);
        let powered = base.powi(factor.power.abs());
        out = if factor.power < 0 { out.div(&powered) } else { out.mul(&powered) };
    }
    // Keep the user's spelling exactly.
    out.text = unit
        .factors
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let op = match (i, f.power < 0) {
                (0, true) => "1/",
                (0, false) => "",
                (_, true) => "/",
                (_, false) => "*",
            };
            let power = f.power.abs();
            if power == 1 { format!("{op}{}", f.name) } else { format!("{op}{}^{power}", f.name) }
        })
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algebra_keeps_spelling_and_dimension() {
        let mv = named("mV").unwrap();
        let ms = named("ms").unwrap();
        let rate = mv.div(&ms);
        assert_eq!(rate.text, "mV/ms");
        assert_eq!(rate.scale, 0);
        assert!(rate.mul(&ms) == mv);
        assert_eq!(ms.div(&ms).text, "1");
        let ohm_amp = named("ohm").unwrap().mul(&named("A").unwrap());
        assert!(ohm_amp == named("V").unwrap());
        assert!(named("Hz").unwrap().mul(&ms).is_none());
        assert_eq!(named("nS").unwrap().factor(), 1e-9);
    }
}
