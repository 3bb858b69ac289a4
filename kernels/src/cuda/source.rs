//! The CUDA sources of the backend and how NVRTC compiles them: one module per `.cu` file beside this
//! one, each preceded by `prelude.cuh` (types and the CPU's f32 math). Production compiles a module
//! once per device (`Cuda` caches it); the NVRTC test compiles every module through [`compile_ptx`]
//! too, so what it checks is what a GPU runs.

use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

/// Prepended to every module.
pub const PRELUDE: &str = include_str!("prelude.cuh");

/// One `.cu` file, compiled as one NVRTC program and loaded as one CUDA module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    Elementwise,
    Reduce,
    Optim,
    Noise,
    Rows,
    Embedding,
    Loss,
    Gru,
}

impl Module {
    pub const ALL: [Module; 8] = [
        Module::Elementwise,
        Module::Reduce,
        Module::Optim,
        Module::Noise,
        Module::Rows,
        Module::Embedding,
        Module::Loss,
        Module::Gru,
    ];

    /// The file name beside this source (also the NVRTC program name, which its messages show).
    pub fn file(self) -> &'static str {
        match self {
            Module::Elementwise => "elementwise.cu",
            Module::Reduce => "reduce.cu",
            Module::Optim => "optim.cu",
            Module::Noise => "noise.cu",
            Module::Rows => "rows.cu",
            Module::Embedding => "embedding.cu",
            Module::Loss => "loss.cu",
            Module::Gru => "gru.cu",
        }
    }

    /// The file's text, without the prelude.
    pub fn body(self) -> &'static str {
        match self {
            Module::Elementwise => include_str!("elementwise.cu"),
            Module::Reduce => include_str!("reduce.cu"),
            Module::Optim => include_str!("optim.cu"),
            Module::Noise => include_str!("noise.cu"),
            Module::Rows => include_str!("rows.cu"),
            Module::Embedding => include_str!("embedding.cu"),
            Module::Loss => include_str!("loss.cu"),
            Module::Gru => include_str!("gru.cu"),
        }
    }

    /// What NVRTC compiles: the prelude, then the file.
    pub fn source(self) -> String {
        format!("{PRELUDE}\n#line 1 \"{}\"\n{}", self.file(), self.body())
    }

    /// The kernels (`extern "C" __global__` functions) the file defines, in order.
    pub fn kernels(self) -> Vec<&'static str> {
        kernel_names(self.body())
    }
}

/// The names of the `extern "C" __global__ void NAME(` functions of a source.
pub fn kernel_names(src: &str) -> Vec<&str> {
    const MARK: &str = "extern \"C\" __global__ void ";
    src.lines()
        .filter_map(|l| l.trim_start().strip_prefix(MARK))
        .filter_map(|rest| rest.split('(').next())
        .map(str::trim)
        .collect()
}

/// The NVRTC options of production for a device of compute capability `major.minor`: IEEE f32 (no
/// flush to zero, correctly rounded division and square root, no contraction into FMA), the CPU's
/// rounding (kernels/NOISE.md), PTX for exactly that architecture.
pub fn compile_options(major: u32, minor: u32) -> CompileOptions {
    CompileOptions {
        ftz: Some(false),
        prec_sqrt: Some(true),
        prec_div: Some(true),
        fmad: Some(false),
        use_fast_math: Some(false),
        options: vec![format!("--gpu-architecture=sm_{major}{minor}"), "--std=c++17".into()],
        name: None,
        ..Default::default()
    }
}

/// Compiles `module` to PTX for compute capability `major.minor`, exactly as the backend does. The
/// caller makes sure NVRTC is present (`cudarc::nvrtc::sys::is_culib_present`): cudarc panics
/// without it.
pub fn compile_ptx(module: Module, major: u32, minor: u32) -> Result<Ptx, CompileError> {
    let opts = CompileOptions { name: Some(module.file().into()), ..compile_options(major, minor) };
    cudarc::nvrtc::compile_ptx_with_opts(module.source(), opts)
}
