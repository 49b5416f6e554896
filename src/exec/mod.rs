//! Execution: engine-independent state ([`state`]: parameters, traces, samples, random keys;
//! [`pool`]: per-thread buffers; [`real`]: the float type), the engines behind one trait
//! ([`engine`]: the scalar [`oracle`] and the Cranelift [`jit`] with its [`schedule`]s), and
//! the precompiled [`kernels`] they call (GEMM, events, connectivity loops, spike bits), and the
//! [`plasticity`] of synapses (traces, `on pre` / `on post` updates) that STDP runs after each step.

pub mod engine;
pub mod exact;
pub mod jit;
pub mod kernels;
pub mod oracle;
pub mod plasticity;
pub mod pool;
pub mod real;
pub mod schedule;
pub mod state;

/// Subnormal floats flushed to zero on this thread while the guard lives (inputs and results:
/// x86-64's MXCSR DAZ and FTZ bits), the previous mode restored when it drops. Every engine
/// runs under it, so they agree with each other: a decaying conductance or trace reaches
/// the subnormal range (below 1.2e-38 in f32) after a few hundred steps without input, and
/// arithmetic on subnormals is tens of times slower on x86 (the Diehl & Cook network ran 28%
/// slower with them). GPUs flush them too. Elsewhere than x86-64 the guard does nothing.
pub struct FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

#[cfg(target_arch = "x86_64")]
const DAZ_FTZ: u32 = 0x8040;

impl FlushSubnormals {
    pub fn on() -> FlushSubnormals {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: reading and writing MXCSR only changes this thread's float modes; the
            // saved value is restored on drop.
            #[allow(deprecated)]
            let saved = unsafe { std::arch::x86_64::_mm_getcsr() };
            #[allow(deprecated)]
            unsafe {
                std::arch::x86_64::_mm_setcsr(saved | DAZ_FTZ)
            };
            FlushSubnormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushSubnormals {}
    }
}

impl Drop for FlushSubnormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: restores the mode read in `on`.
        #[allow(deprecated)]
        unsafe {
            std::arch::x86_64::_mm_setcsr(self.saved)
        };
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::FlushSubnormals;
    use std::hint::black_box;

    #[test]
    fn subnormals_are_flushed_while_the_guard_lives_and_only_then() {
        let product = || black_box(1e-38f32) * black_box(0.01f32);
        assert!(product() > 0.0, "IEEE: a subnormal result");
        {
            let _flush = FlushSubnormals::on();
            assert_eq!(product(), 0.0, "flushed to zero");
            assert_eq!(black_box(1e-40f32) + black_box(0.0f32), 0.0, "a subnormal input reads as zero");
        }
        assert!(product() > 0.0, "the previous mode is back");
    }
}
