//! The CUDA backend (issue 14): finding the device ([`probe`]), the device ([`Cuda`]: context, stream,
//! cuBLAS handle, NVRTC modules compiled once per device), its buffers, and a kernel for every required
//! method of [`crate::Backend`], which `Cuda` implements: elementwise ops, reductions, column copies,
//! activations, layer norm, the masked softmax, the GRU step, embedding (lookup, scatter, group norms),
//! pooling, the losses, optimizers and noise, each launched from a plan ([`plan`]) that the CPU
//! emulation tests run too; gemm goes through cuBLAS `sgemmStridedBatched` ([`Cuda::gemm`]; f32, TF32
//! only through [`Cuda::set_tf32`]). The composed ops `split_last_column`, `weighted_row_sum` and
//! `linear_group_sq_norms` are the trait's defaults (no fused kernels yet).
//!
//! What is proven where: every kernel runs in the C++ emulation against the CPU backend, plain and
//! under ASan+UBSan and TSan (tests/cuda_emu.rs), and through NVRTC and ptxas without spills
//! (tests/cuda_nvrtc.rs). gemm cannot be emulated: its mapping onto cuBLAS' column-major call is
//! checked on the CPU (the unit tests of [`plan`]), the cuBLAS call itself only on a GPU. Every check on
//! a real device (tests/cuda_device.rs, and the `cuda` arm of every `backend_tests!` body: the layer,
//! DP, optimizer and gemm contracts) runs with `MEDTRAIN_TEST_CUDA=1`.
//!
//! Every build has this module: cudarc loads libcuda, libnvrtc and libcublas at run time. [`probe`]
//! asks for each library before anything calls into it (cudarc panics when a library it calls is
//! missing), so a machine without a GPU gets a [`ProbeError`] naming what is missing, never a panic.
//!
//! The kernels give the CPU backend's bits (kernels/NOISE.md for the noise; the same IEEE operations
//! in the same order for the rest: rows.cu keeps the CPU's 16-accumulator row sums with one half warp
//! a row; the embedding backward and group norms sum in the CPU's row order from lists built on the
//! host from the ids' host copy, which [`CudaIds`] keeps), except `add_row_dots` and
//! `embedding_group_sq_norms` (one warp a row or group), whose f64 sums run
//! in another fixed order (one f32 ulp), and `bce_with_logits` and `cross_entropy`, whose f64 exp and
//! ln are loss.cu's own, not glibc's (one f32 ulp; bit for bit on every input the tests try), and
//! gemm (cuBLAS' own summation order: within f32 rounding of the f64 product).
//!
//! Run on a GPU (an H200, 2026-11-29): every kernel against the CPU (tests/cuda_device.rs), the whole
//! per-backend suite, dp-grad and short training runs (benches/RESULTS.md). The warp-per-group
//! `embedding_group_sq_norms` came after that run: proven in the emulation and by NVRTC/ptxas only.
//! Left to do, for speed: fused CUDA kernels for `linear_group_sq_norms` and `weighted_row_sum` (today
//! the trait's gemm-based defaults); the embedding backward's lists are built on the host per call (a
//! device sort would avoid the upload); a buffer pool instead of an allocation per temporary.

pub mod plan;
pub mod source;

use crate::backend::{Activation, AdamW, Backend, Gemm, GroupRows, MaskFill, MatView, NoiseKey};
use crate::error::{check_len, KernelError, Result};
use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};
use plan::{Arg, Geometry, Launch, Slice};
use source::Module;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The oldest driver the backend runs on: CUDA 12.0 (every driver call it makes exists there).
/// The driver must also be at least as new as NVRTC, whose PTX it loads (checked by [`probe`]).
pub const MIN_DRIVER_VERSION: i32 = 12000;

/// What [`probe`] found: the device a [`Cuda`] would run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// (major, minor): 9.0 for H100/H200; NVRTC compiles for exactly this
    pub compute_capability: (u32, u32),
    pub total_memory: usize,
    /// the driver's CUDA version, 1000 * major + 10 * minor (12040 is 12.4)
    pub driver_version: i32,
    /// NVRTC's (major, minor)
    pub nvrtc_version: (i32, i32),
    pub device_count: usize,
}

/// Why there is no CUDA device to run on: names what is missing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("no CUDA driver: libcuda could not be loaded (is the NVIDIA driver installed, and its library on the loader's path?)")]
    NoDriver,
    #[error("no CUDA device {ordinal}: the driver sees {count}")]
    NoDevice { ordinal: usize, count: usize },
    #[error("CUDA driver too old: it supports CUDA {}, and {why} needs CUDA {} or newer", version(*.found), version(*.required))]
    DriverTooOld { found: i32, required: i32, why: &'static str },
    #[error("no NVRTC: libnvrtc could not be loaded (the CUDA toolkit's, or the PyPI wheel nvidia-cuda-nvrtc: scripts/ensure-nvrtc.sh installs it and prints the directory to put on LD_LIBRARY_PATH)")]
    NoNvrtc,
    #[error("no cuBLAS: libcublas could not be loaded (the CUDA toolkit's, or the PyPI wheel nvidia-cublas)")]
    NoCublas,
    #[error("CUDA call {call} failed: {error}")]
    Call { call: &'static str, error: String },
}

/// 12040 -> "12.4"
fn version(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

fn driver_call(call: &'static str, e: cudarc::driver::DriverError) -> ProbeError {
    ProbeError::Call { call, error: e.to_string() }
}

/// Looks for CUDA device `ordinal` and what the backend needs to run on it: the driver (new
/// enough), the device, NVRTC (the driver at least as new) and cuBLAS, in that order. Never panics:
/// each library is asked for before any call into it.
pub fn probe(ordinal: usize) -> std::result::Result<DeviceInfo, ProbeError> {
    use cudarc::driver::result;
    // SAFETY: only tries to load the library (dlopen) and drops it
    if !unsafe { sys::is_culib_present() } {
        return Err(ProbeError::NoDriver);
    }
    let mut driver_version = 0;
    // SAFETY: libcuda is present and every driver has cuDriverGetVersion; the pointer is valid
    unsafe { sys::cuDriverGetVersion(&mut driver_version) }
        .result()
        .map_err(|e| driver_call("cuDriverGetVersion", e))?;
    if driver_version < MIN_DRIVER_VERSION {
        return Err(ProbeError::DriverTooOld {
            found: driver_version,
            required: MIN_DRIVER_VERSION,
            why: "the backend's driver calls",
        });
    }
    match result::init() {
        Ok(()) => {}
        Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE => return Err(ProbeError::NoDevice { ordinal, count: 0 }),
        Err(e) => return Err(driver_call("cuInit", e)),
    }
    let count = result::device::get_count().map_err(|e| driver_call("cuDeviceGetCount", e))?.max(0) as usize;
    if ordinal >= count {
        return Err(ProbeError::NoDevice { ordinal, count });
    }
    // SAFETY: as for libcuda
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(ProbeError::NoNvrtc);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: libnvrtc is present and has nvrtcVersion since CUDA 7; the pointers are valid
    let nvrtc = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if nvrtc != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(ProbeError::Call { call: "nvrtcVersion", error: format!("{nvrtc:?}") });
    }
    if driver_version < major * 1000 + minor * 10 {
        return Err(ProbeError::DriverTooOld {
            found: driver_version,
            required: major * 1000 + minor * 10,
            why: "loading the PTX of the installed NVRTC",
        });
    }
    // SAFETY: as for libcuda
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return Err(ProbeError::NoCublas);
    }
    let dev = result::device::get(ordinal as i32).map_err(|e| driver_call("cuDeviceGet", e))?;
    let name = result::device::get_name(dev).map_err(|e| driver_call("cuDeviceGetName", e))?;
    let attribute = |a| {
        // SAFETY: dev is a valid device of an initialized driver
        unsafe { result::device::get_attribute(dev, a) }.map_err(|e| driver_call("cuDeviceGetAttribute", e))
    };
    let cc_major = attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let cc_minor = attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    // SAFETY: as above
    let total_memory = unsafe { result::device::total_mem(dev) }.map_err(|e| driver_call("cuDeviceTotalMem", e))?;
    Ok(DeviceInfo {
        ordinal,
        name,
        compute_capability: (cc_major.max(0) as u32, cc_minor.max(0) as u32),
        total_memory,
        driver_version,
        nvrtc_version: (major, minor),
        device_count: count,
    })
}

/// A buffer on the device: `None` when empty (CUDA allocates no 0-byte buffers).
pub struct DeviceVec<T> {
    slice: Option<CudaSlice<T>>,
}

impl<T> DeviceVec<T> {
    pub fn len(&self) -> usize {
        self.slice.as_ref().map_or(0, |s| s.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// f32 buffer on the device (the trait's `Buf`).
pub type CudaBuf = DeviceVec<f32>;
/// u32 buffer on the device (the trait's `Ids`), with its host copy: ids are uploaded once per batch,
/// and the host copy is what the CPU's checks (an id past the vocabulary) and the scatter lists of the
/// embedding backward read, without a download.
pub struct CudaIds {
    dev: DeviceVec<u32>,
    host: Vec<u32>,
}

/// A privacy group layout on the device (the trait's `Groups`): the host layout, its u64 offsets and
/// the group of each example (see [`plan::group_maps`]).
pub struct CudaGroups {
    layout: GroupRows,
    offsets: DeviceVec<u64>,
    example_group: DeviceVec<u32>,
}

impl AsRef<GroupRows> for CudaGroups {
    fn as_ref(&self) -> &GroupRows {
        &self.layout
    }
}

/// One CUDA device: its context, one stream that every call is ordered on, a cuBLAS handle on that
/// stream, and the NVRTC modules, compiled for the device's architecture on first use and kept.
pub struct Cuda {
    info: DeviceInfo,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: cudarc::cublas::CudaBlas,
    /// whether gemm may round its operands to TF32 on tensor cores ([`Cuda::set_tf32`]); off by default
    tf32: bool,
    modules: Mutex<HashMap<Module, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    /// calls that found the device full and had the pool give its free memory back ([`Cuda::retrying`])
    pool_releases: std::sync::atomic::AtomicU64,
    /// `MEDTRAIN_CUDA_PROFILE=1`: (calls, seconds) per kernel, cuBLAS call, allocation and copy, each
    /// timed between two synchronizations (which slows the run: for finding where time goes, not
    /// for benchmarks), printed to stderr when the backend is dropped
    profile: Option<Mutex<HashMap<&'static str, (u64, f64)>>>,
}

impl Drop for Cuda {
    fn drop(&mut self) {
        let Some(p) = self.profile.take() else { return };
        let p = p.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<_> = p.into_iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let total: f64 = rows.iter().map(|r| r.1 .1).sum();
        eprintln!("CUDA profile (each call synchronized), {:.1} ms in all:", total * 1e3);
        if let Ok(Some((_, high))) = self.pool_reserved_bytes() {
            eprintln!("memory pool: at most {:.1} MiB held", high as f64 / (1u64 << 20) as f64);
        }
        eprintln!("{:<32} {:>9} {:>11} {:>10} {:>6}", "call", "calls", "total ms", "mean us", "share");
        for (name, (n, t)) in rows {
            eprintln!(
                "{name:<32} {n:>9} {:>11.2} {:>10.1} {:>5.1}%",
                t * 1e3,
                t * 1e6 / n.max(1) as f64,
                100.0 * t / total.max(1e-12)
            );
        }
    }
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cuda({} #{}, sm_{}{})",
            self.info.name, self.info.ordinal, self.info.compute_capability.0, self.info.compute_capability.1
        )
    }
}

fn device_error(op: &'static str, e: impl std::fmt::Display) -> KernelError {
    KernelError::Device(format!("CUDA {op}: {e}"))
}

/// The device's current stream-ordered memory pool, which cudarc's allocations come from
/// (`cuMemAllocAsync`); `None` where the device has none (cudarc then allocates synchronously).
fn memory_pool(ctx: &CudaContext) -> Result<Option<sys::CUmemoryPool>> {
    if !ctx.has_async_alloc() {
        return Ok(None);
    }
    let mut pool = std::ptr::null_mut();
    // SAFETY: the device handle is the context's own; the call writes one pool handle
    unsafe { sys::cuDeviceGetMemPool(&mut pool, ctx.cu_device()) }
        .result()
        .map_err(|e| device_error("cuDeviceGetMemPool", e))?;
    Ok(Some(pool))
}

/// Sets one of the pool's u64 attributes (the release threshold, a high-water mark to reset).
fn set_pool_attribute(pool: sys::CUmemoryPool, attr: sys::CUmemPool_attribute, mut value: u64) -> Result<()> {
    // SAFETY: the pool is the device's; the u64 attributes take a pointer to a u64 (cuuint64_t)
    unsafe { sys::cuMemPoolSetAttribute(pool, attr, (&mut value as *mut u64).cast()) }
        .result()
        .map_err(|e| device_error("cuMemPoolSetAttribute", e))
}

/// Reads one of the pool's u64 attributes (reserved or used memory, now or at most).
fn pool_attribute(pool: sys::CUmemoryPool, attr: sys::CUmemPool_attribute) -> Result<u64> {
    let mut v = 0u64;
    // SAFETY: the device's pool; the memory attributes write one u64 (cuuint64_t)
    unsafe { sys::cuMemPoolGetAttribute(pool, attr, (&mut v as *mut u64).cast()) }
        .result()
        .map_err(|e| device_error("cuMemPoolGetAttribute", e))?;
    Ok(v)
}

/// Tells the pool to keep the memory that buffers give back instead of returning it to the driver.
/// The pool's default release threshold is 0: at every synchronization (each step downloads its loss)
/// it gave back all free memory, and the next step mapped its temporaries again. With the threshold at
/// its maximum the pool holds the largest step's working set, as PyTorch's caching allocator does;
/// an allocation, module load, launch or cuBLAS call that finds the device full has the pool give its
/// free memory back and tries once more ([`Cuda::retrying`]). Also resets the pool's high-water mark
/// ([`Cuda::pool_reserved_bytes`]).
fn keep_freed_memory(ctx: &CudaContext) -> Result<()> {
    use sys::CUmemPool_attribute::{CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH};
    let Some(pool) = memory_pool(ctx)? else { return Ok(()) };
    set_pool_attribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, u64::MAX)?;
    set_pool_attribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, 0)
}

/// Whether a driver call failed for want of device memory.
fn driver_oom(e: &cudarc::driver::DriverError) -> bool {
    e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY
}

/// Whether a cuBLAS call failed for want of device memory (its workspace).
fn cublas_oom(e: &cudarc::cublas::result::CublasError) -> bool {
    e.0 == cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED
}

impl Cuda {
    /// The device `ordinal`, after [`probe`] found everything the backend needs (its error otherwise).
    pub fn new(ordinal: usize) -> Result<Self> {
        let info = probe(ordinal)?;
        let ctx = CudaContext::new(ordinal).map_err(|e| device_error("context", e))?;
        // SAFETY: every buffer of this device is used on its one stream, so cudarc's events (which
        // order buffers used on several streams) are not needed
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| device_error("stream", e))?;
        // only speed depends on it (a vGPU or MIG slice may refuse pool settings): a warning, not an error
        if let Err(e) = keep_freed_memory(&ctx) {
            eprintln!(
                "warning: {e}: the device's memory pool gives freed memory back to the driver at every \
                 synchronization (slower steps, the same results)"
            );
        }
        let blas = cudarc::cublas::CudaBlas::new(stream.clone()).map_err(|e| device_error("cuBLAS handle", e))?;
        let profile = std::env::var("MEDTRAIN_CUDA_PROFILE").is_ok_and(|v| v == "1").then(Mutex::default);
        let mut cuda = Cuda {
            info,
            ctx,
            stream,
            blas,
            tf32: true,
            modules: Mutex::default(),
            functions: Mutex::default(),
            pool_releases: Default::default(),
            profile,
        };
        cuda.set_tf32(false)?;
        Ok(cuda)
    }

    /// Lets gemm round its f32 operands to TF32 (10-bit mantissa) on tensor cores: much faster on
    /// Ampere and newer, about 1e-3 relative error per product instead of f32's 6e-8. Off unless asked
    /// for (cuBLAS' default math mode: f32 throughout).
    pub fn set_tf32(&mut self, on: bool) -> Result<()> {
        use cudarc::cublas::sys;
        let mode =
            if on { sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH } else { sys::cublasMath_t::CUBLAS_DEFAULT_MATH };
        // SAFETY: the handle is live (owned by self.blas); the call only sets a mode on it
        let status = unsafe { sys::cublasSetMathMode(*self.blas.handle(), mode) };
        if status != sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(device_error("cublasSetMathMode", format!("{status:?}")));
        }
        self.tf32 = on;
        Ok(())
    }

    /// Whether gemm may use TF32 ([`Cuda::set_tf32`]).
    pub fn tf32(&self) -> bool {
        self.tf32
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The bytes the device's memory pool holds now and at most since its high-water mark was last
    /// reset (buffers live and free memory kept for the next ones: [`keep_freed_memory`], which resets
    /// the mark when a backend starts; the pool is the device's, shared by every backend of the
    /// process); `None` where the device allocates without a pool.
    pub fn pool_reserved_bytes(&self) -> Result<Option<(u64, u64)>> {
        let Some(pool) = memory_pool(&self.ctx)? else { return Ok(None) };
        use sys::CUmemPool_attribute::{CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH};
        Ok(Some((
            pool_attribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)?,
            pool_attribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH)?,
        )))
    }

    /// How many times a call that found the device full had the pool give its free memory back
    /// ([`Cuda::retrying`]), since the backend started.
    pub fn pool_releases(&self) -> u64 {
        self.pool_releases.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The bytes buffers can still take: the driver's free memory and what the pool holds unused.
    fn available_memory(&self) -> Result<u64> {
        let (free, _) = self.ctx.mem_get_info().map_err(|e| device_error("cuMemGetInfo", e))?;
        let kept = match memory_pool(&self.ctx)? {
            Some(pool) => {
                use sys::CUmemPool_attribute::{
                    CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, CU_MEMPOOL_ATTR_USED_MEM_CURRENT,
                };
                let reserved = pool_attribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)?;
                reserved.saturating_sub(pool_attribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?)
            }
            None => 0,
        };
        Ok((free as u64).saturating_add(kept))
    }

    /// Waits for every queued call, then has the pool give the memory it keeps free back to the driver
    /// (for a call that found the device full while the pool held freed buffers).
    fn release_pool(&self) -> Result<()> {
        self.synchronize()?;
        if let Some(pool) = memory_pool(&self.ctx)? {
            // SAFETY: the device's pool; trimming releases only memory no allocation holds
            unsafe { sys::cuMemPoolTrimTo(pool, 0) }.result().map_err(|e| device_error("cuMemPoolTrimTo", e))?;
        }
        self.pool_releases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Runs the device call `f`; when it fails for want of memory (`oom`), has the pool give back what
    /// it keeps free and runs it once more. The pool keeps freed memory ([`keep_freed_memory`]), so
    /// without this a module load, a launch or cuBLAS' workspace could find the device full of
    /// memory nothing uses. The outer error: the release itself failed.
    fn retrying<R, E>(
        &self,
        oom: fn(&E) -> bool,
        mut f: impl FnMut() -> std::result::Result<R, E>,
    ) -> Result<std::result::Result<R, E>> {
        match f() {
            Err(e) if oom(&e) => {
                self.release_pool()?;
                Ok(f())
            }
            r => Ok(r),
        }
    }

    /// Waits for everything queued on the device (kernel errors surface here or at a download).
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| device_error("synchronize", e))
    }

    /// Runs `f`, timed between two synchronizations under `MEDTRAIN_CUDA_PROFILE=1` (else just runs it).
    fn timed<R>(&self, name: &'static str, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let Some(p) = &self.profile else { return f() };
        self.synchronize()?;
        let t = std::time::Instant::now();
        let r = f()?;
        self.synchronize()?;
        let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
        let e = p.entry(name).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += t.elapsed().as_secs_f64();
        Ok(r)
    }

    fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, op: &'static str, len: usize) -> Result<DeviceVec<T>> {
        self.timed("(alloc_zeros)", || self.alloc_untimed(op, len))
    }

    fn alloc_untimed<T: DeviceRepr + ValidAsZeroBits>(&self, op: &'static str, len: usize) -> Result<DeviceVec<T>> {
        let mut v = self.alloc_unset(op, len)?;
        if let Some(s) = v.slice.as_mut() {
            self.stream.memset_zeros(s).map_err(|e| device_error(op, e))?;
        }
        Ok(v)
    }

    /// A buffer of `len` elements whose memory is not set: only for one that is written whole before
    /// it is read (an upload's destination), which saves the zeroing's memset.
    fn alloc_unset<T: DeviceRepr>(&self, op: &'static str, len: usize) -> Result<DeviceVec<T>> {
        if len == 0 {
            return Ok(DeviceVec { slice: None });
        }
        let oom = KernelError::OutOfMemory { op, elements: len, element_bytes: std::mem::size_of::<T>() };
        // more than the device has is out of memory before the driver is asked (and len * size may
        // not even fit in usize)
        match len.checked_mul(std::mem::size_of::<T>()) {
            Some(bytes) if bytes <= self.info.total_memory => {}
            _ => return Err(oom),
        }
        // the pool may hold free memory in pieces too small for this buffer: then it gives that back
        // to the driver and the allocation is asked once more
        // SAFETY: the memory is not set; every caller sets it (zeroes it, or copies a whole host
        // slice of `len` elements into it) before anything reads it
        match self.retrying(driver_oom, || unsafe { self.stream.alloc::<T>(len) })? {
            Ok(s) => Ok(DeviceVec { slice: Some(s) }),
            Err(e) if driver_oom(&e) => Err(oom),
            Err(e) => Err(device_error(op, e)),
        }
    }

    /// A buffer holding `data`: allocated unset, then the whole of it copied in (no zeroing first).
    fn upload_vec<T: DeviceRepr>(&self, op: &'static str, data: &[T]) -> Result<DeviceVec<T>> {
        let mut v = self.timed("(alloc)", || self.alloc_unset(op, data.len()))?;
        if let Some(s) = v.slice.as_mut() {
            self.timed("(memcpy_htod)", || self.stream.memcpy_htod(data, s).map_err(|e| device_error(op, e)))?;
        }
        Ok(v)
    }

    /// The plan's view of a buffer: its device address (0 when empty) and length.
    fn slice<T>(&self, v: &DeviceVec<T>) -> Slice {
        let ptr = v.slice.as_ref().map_or(0, |s| s.device_ptr(&self.stream).0);
        Slice { ptr, len: v.len() }
    }

    fn function(&self, module: Module, kernel: &'static str) -> Result<CudaFunction> {
        let mut functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = functions.get(kernel) {
            return Ok(f.clone());
        }
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let m = match modules.get(&module) {
            Some(m) => m.clone(),
            None => {
                let (major, minor) = self.info.compute_capability;
                let ptx = source::compile_ptx(module, major, minor)
                    .map_err(|e| KernelError::Device(format!("NVRTC cannot compile {}: {e}", module.file())))?;
                let m = self
                    .retrying(driver_oom, || self.ctx.load_module(ptx.clone()))?
                    .map_err(|e| device_error("module load", e))?;
                modules.insert(module, m.clone());
                m
            }
        };
        // lazy loading (CUDA 12.2 and newer) loads the kernel here, which needs device memory
        let f =
            self.retrying(driver_oom, || m.load_function(kernel))?.map_err(|e| device_error("function lookup", e))?;
        functions.insert(kernel, f.clone());
        Ok(f)
    }

    /// Queues a plan's kernel on the stream (nothing for an empty plan).
    fn run(&self, launch: Option<Launch>) -> Result<()> {
        let Some(launch) = launch else { return Ok(()) };
        let f = self.function(launch.module, launch.kernel)?;
        let mut builder = self.stream.launch_builder(&f);
        for arg in &launch.args {
            match arg {
                Arg::Ptr(v) | Arg::U64(v) => builder.arg(v),
                Arg::U32(v) => builder.arg(v),
                Arg::F32(v) => builder.arg(v),
                Arg::Noise(p) => builder.arg(p),
            };
        }
        let cfg = LaunchConfig { grid_dim: (launch.grid, 1, 1), block_dim: (launch.block, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the plan's arguments match the kernel's C signature (the emulation tests check each
        // launch against the signature), and every pointer is a live buffer of this device whose
        // length the plan checked
        // (a launch may need device memory for the kernel's local memory)
        self.timed(launch.kernel, || {
            self.retrying(driver_oom, || unsafe { builder.launch(cfg) })?
                .map(|_| ())
                .map_err(|e| device_error(launch.kernel, e))
        })
    }
}

/// The CUDA backend: a kernel (or cuBLAS) for every required method (the trait's defaults for the
/// composed ops it does not fuse: `split_last_column`, `weighted_row_sum`, `linear_group_sq_norms`).
impl Backend for Cuda {
    type Buf = CudaBuf;
    type Ids = CudaIds;
    type Groups = CudaGroups;

    fn name(&self) -> &'static str {
        "cuda"
    }
    /// One stream: the device's parallelism is not a thread count.
    fn threads(&self) -> usize {
        1
    }
    /// The device's memory that buffers can take now: the driver's free memory and what the pool
    /// keeps unused (other processes may take some of it: a bound, not a promise); its total memory
    /// where the driver does not say.
    fn memory_limit(&self) -> Option<u64> {
        Some(self.available_memory().unwrap_or(self.info.total_memory as u64))
    }
    fn synchronize(&self) -> Result<()> {
        Cuda::synchronize(self)
    }

    // ---- buffers ----

    fn zeros(&self, len: usize) -> Result<CudaBuf> {
        self.alloc("zeros", len)
    }
    fn upload(&self, data: &[f32]) -> Result<CudaBuf> {
        self.upload_vec("upload", data)
    }
    fn download(&self, buf: &CudaBuf) -> Result<Vec<f32>> {
        let Some(s) = buf.slice.as_ref() else { return Ok(Vec::new()) };
        let mut host = Vec::new();
        host.try_reserve_exact(s.len()).map_err(|_| KernelError::OutOfMemory {
            op: "download",
            elements: s.len(),
            element_bytes: 4,
        })?;
        host.resize(s.len(), 0.0f32);
        self.timed("(memcpy_dtoh)", || {
            self.stream.memcpy_dtoh(s, &mut host).map_err(|e| device_error("download", e))?;
            self.synchronize()
        })?;
        Ok(host)
    }
    fn upload_ids(&self, ids: &[u32]) -> Result<CudaIds> {
        Ok(CudaIds { dev: self.upload_vec("upload_ids", ids)?, host: ids.to_vec() })
    }
    fn len(&self, buf: &CudaBuf) -> usize {
        buf.len()
    }
    fn ids_len(&self, ids: &CudaIds) -> usize {
        ids.host.len()
    }
    /// Makes `buf` exactly `len` long: a new zeroed buffer when the size changes; `buf` is unchanged
    /// when that fails.
    fn resize(&self, buf: &mut CudaBuf, len: usize) -> Result<()> {
        if buf.len() != len {
            *buf = self.alloc("resize", len)?;
        }
        Ok(())
    }
    fn fill(&self, buf: &mut CudaBuf, value: f32) -> Result<()> {
        self.run(plan::fill(self.slice(buf), value, Geometry::DEVICE))
    }
    fn copy(&self, dst: &mut CudaBuf, src: &CudaBuf) -> Result<()> {
        check_len("copy", "dst", src.len(), dst.len())?;
        if let (Some(d), Some(s)) = (dst.slice.as_mut(), src.slice.as_ref()) {
            self.stream.memcpy_dtod(s, d).map_err(|e| device_error("copy", e))?;
        }
        Ok(())
    }
    fn groups(&self, layout: &GroupRows) -> Result<CudaGroups> {
        let (offsets, example_group) = plan::group_maps(layout)?;
        Ok(CudaGroups {
            layout: layout.clone(),
            offsets: self.upload_vec("groups", &offsets)?,
            example_group: self.upload_vec("groups", &example_group)?,
        })
    }

    // ---- matmul ----

    /// `Backend::gemm` through cuBLAS `sgemmStridedBatched` (one call for the whole batch), with the
    /// CPU's checks ([`plan::gemm`]). Not the CPU's bits: cuBLAS sums in its own order (f32, or TF32
    /// when [`Cuda::set_tf32`] asked for it).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        c: &mut CudaBuf,
        cv: MatView,
        a: &CudaBuf,
        av: MatView,
        b: &CudaBuf,
        bv: MatView,
        g: Gemm,
    ) -> Result<()> {
        use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        let Some(call) = plan::gemm(c.len(), cv, a.len(), av, b.len(), bv, g)? else { return Ok(()) };
        let (cp, ap, bp) = (self.slice(c).ptr, self.slice(a).ptr, self.slice(b).ptr);
        let at = |base: u64, offset: usize| base + offset as u64 * 4;
        let op = |t: bool| if t { CUBLAS_OP_T } else { CUBLAS_OP_N };
        // SAFETY: the plan checked every view's extent against its buffer's length (so each address
        // cuBLAS computes lies in a live buffer of this device), C is not among the inputs (a &mut
        // borrow), and the handle runs on this device's one stream; alpha and beta are host values
        // read during the call (cuBLAS' host pointer mode, cudarc's default)
        let (a, b, c) = (
            at(bp, call.a_offset) as *const f32,
            at(ap, call.b_offset) as *const f32,
            at(cp, call.c_offset) as *mut f32,
        );
        let handle = *self.blas.handle();
        let (ta, tb) = (op(call.trans_a), op(call.trans_b));
        let sgemm = || unsafe {
            cudarc::cublas::result::sgemm_strided_batched(
                handle,
                ta,
                tb,
                call.m,
                call.n,
                call.k,
                &call.alpha,
                a,
                call.lda,
                call.stride_a,
                b,
                call.ldb,
                call.stride_b,
                &call.beta,
                c,
                call.ldc,
                call.stride_c,
                call.batch,
            )
        };
        // cuBLAS allocates its workspace on first use of a shape: from a pool that keeps freed memory
        self.timed(if call.batch > 1 { "cublas sgemm (batched)" } else { "cublas sgemm" }, || {
            self.retrying(cublas_oom, sgemm)?.map_err(|e| match cublas_oom(&e) {
                true => device_error("cuBLAS sgemmStridedBatched", format!("{e} (the device's memory is full)")),
                false => device_error("cuBLAS sgemmStridedBatched", e),
            })
        })
    }

    // ---- elementwise and reductions ----

    fn broadcast_rows(&self, y: &mut CudaBuf, bias: &CudaBuf, rows: usize) -> Result<()> {
        self.run(plan::broadcast_rows(self.slice(y), self.slice(bias), rows, Geometry::DEVICE)?)
    }
    fn add(&self, out: &mut CudaBuf, a: &CudaBuf, b: &CudaBuf) -> Result<()> {
        self.run(plan::add(self.slice(out), self.slice(a), self.slice(b), Geometry::DEVICE)?)
    }
    fn add_assign(&self, y: &mut CudaBuf, x: &CudaBuf) -> Result<()> {
        self.run(plan::add_assign(self.slice(y), self.slice(x), Geometry::DEVICE)?)
    }
    fn group_row_sums(
        &self,
        out: &mut CudaBuf,
        x: &CudaBuf,
        d: usize,
        groups: &CudaGroups,
        rows_per_example: usize,
    ) -> Result<()> {
        if let Some(len) = plan::group_row_sums_split_scratch(&groups.layout, rows_per_example, d) {
            let partial: CudaBuf = self.alloc("group_row_sums", len)?;
            let launches = plan::group_row_sums_split(
                self.slice(out),
                self.slice(x),
                d,
                &groups.layout,
                rows_per_example,
                self.slice(&partial),
                Geometry::DEVICE,
            )?;
            return launches.into_iter().try_for_each(|l| self.run(Some(l)));
        }
        let offsets = self.slice(&groups.offsets);
        let out = self.slice(out);
        self.run(plan::group_row_sums(
            out,
            self.slice(x),
            d,
            &groups.layout,
            offsets,
            rows_per_example,
            Geometry::DEVICE,
        )?)
    }
    fn sum_rows(&self, out: &mut CudaBuf, x: &CudaBuf, d: usize) -> Result<()> {
        let rows = x.len().checked_div(d).unwrap_or(0);
        let all = self.groups(&GroupRows::single(rows))?;
        self.group_row_sums(out, x, d, &all, 1)
    }
    fn add_row_dots(&self, out: &mut CudaBuf, a: &CudaBuf, b: &CudaBuf, d: usize) -> Result<()> {
        self.run(plan::add_row_dots(
            "add_row_dots",
            self.slice(out),
            self.slice(a),
            self.slice(b),
            d,
            Geometry::DEVICE,
        )?)
    }
    fn add_row_sq_norms(&self, out: &mut CudaBuf, x: &CudaBuf, d: usize) -> Result<()> {
        let x = self.slice(x);
        self.run(plan::add_row_dots("add_row_sq_norms", self.slice(out), x, x, d, Geometry::DEVICE)?)
    }
    #[allow(clippy::too_many_arguments)]
    fn scale_rows_by_group(
        &self,
        y: &mut CudaBuf,
        x: &CudaBuf,
        d: usize,
        append_factor: bool,
        factors: &CudaBuf,
        groups: &CudaGroups,
        rows_per_example: usize,
    ) -> Result<()> {
        let map = self.slice(&groups.example_group);
        let y = self.slice(y);
        self.run(plan::scale_rows_by_group(
            y,
            self.slice(x),
            d,
            append_factor,
            self.slice(factors),
            &groups.layout,
            map,
            rows_per_example,
            Geometry::DEVICE,
        )?)
    }
    fn clip_factors(&self, factors: &mut CudaBuf, sq_norms: &CudaBuf, clip: f32) -> Result<()> {
        self.run(plan::clip_factors(self.slice(factors), self.slice(sq_norms), clip, Geometry::DEVICE)?)
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_columns(
        &self,
        dst: &mut CudaBuf,
        dst_w: usize,
        dst_col: usize,
        src: &CudaBuf,
        src_w: usize,
        src_col: usize,
        width: usize,
        rows: usize,
    ) -> Result<()> {
        let dst = self.slice(dst);
        self.run(plan::copy_columns(
            dst,
            dst_w,
            dst_col,
            self.slice(src),
            src_w,
            src_col,
            width,
            rows,
            Geometry::DEVICE,
        )?)
    }

    // ---- activations ----

    fn activation_forward(&self, f: Activation, y: &mut CudaBuf, x: &CudaBuf) -> Result<()> {
        self.run(plan::activation_forward(f, self.slice(y), self.slice(x), Geometry::DEVICE)?)
    }
    fn activation_backward(
        &self,
        f: Activation,
        dx: &mut CudaBuf,
        dy: &CudaBuf,
        x: &CudaBuf,
        y: &CudaBuf,
    ) -> Result<()> {
        let dx = self.slice(dx);
        self.run(plan::activation_backward(f, dx, self.slice(dy), self.slice(x), self.slice(y), Geometry::DEVICE)?)
    }

    // ---- layer norm and attention ----

    #[allow(clippy::too_many_arguments)]
    fn layer_norm_forward(
        &self,
        y: &mut CudaBuf,
        mean: &mut CudaBuf,
        rstd: &mut CudaBuf,
        x: &CudaBuf,
        gamma: &CudaBuf,
        beta: &CudaBuf,
        c: usize,
        eps: f32,
    ) -> Result<()> {
        let (y, mean, rstd) = (self.slice(y), self.slice(mean), self.slice(rstd));
        let (x, gamma, beta) = (self.slice(x), self.slice(gamma), self.slice(beta));
        self.run(plan::layer_norm_forward(y, mean, rstd, x, gamma, beta, c, eps, Geometry::DEVICE)?)
    }
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_backward(
        &self,
        dx: &mut CudaBuf,
        dy_xhat: &mut CudaBuf,
        dy: &CudaBuf,
        x: &CudaBuf,
        gamma: &CudaBuf,
        mean: &CudaBuf,
        rstd: &CudaBuf,
        c: usize,
    ) -> Result<()> {
        let (dx, dy_xhat) = (self.slice(dx), self.slice(dy_xhat));
        let (dy, x, gamma, mean, rstd) =
            (self.slice(dy), self.slice(x), self.slice(gamma), self.slice(mean), self.slice(rstd));
        self.run(plan::layer_norm_backward(dx, dy_xhat, dy, x, gamma, mean, rstd, c, Geometry::DEVICE)?)
    }
    #[allow(clippy::too_many_arguments)]
    fn masked_softmax_forward(
        &self,
        att: &mut CudaBuf,
        mask: &CudaBuf,
        b: usize,
        h: usize,
        tq: usize,
        t: usize,
        scale: f32,
        fill: MaskFill,
    ) -> Result<()> {
        let att = self.slice(att);
        self.run(plan::masked_softmax_forward(att, self.slice(mask), b, h, tq, t, scale, fill, Geometry::DEVICE)?)
    }
    fn softmax_backward(&self, datt: &mut CudaBuf, att: &CudaBuf, t: usize, scale: f32) -> Result<()> {
        let datt = self.slice(datt);
        self.run(plan::softmax_backward(datt, self.slice(att), t, scale, Geometry::DEVICE)?)
    }

    // ---- embedding ----

    fn embedding_forward(
        &self,
        y: &mut CudaBuf,
        ids: &CudaIds,
        table: &CudaBuf,
        d: usize,
        accumulate: bool,
    ) -> Result<()> {
        let (y, ids_dev) = (self.slice(y), self.slice(&ids.dev));
        self.run(plan::embedding_forward(y, ids_dev, &ids.host, self.slice(table), d, accumulate, Geometry::DEVICE)?)
    }
    #[allow(clippy::too_many_arguments)]
    fn embedding_backward(
        &self,
        dtable: &mut CudaBuf,
        ids: &CudaIds,
        dy: &CudaBuf,
        d: usize,
        factors: Option<&CudaBuf>,
        groups: &CudaGroups,
        rows_per_example: usize,
    ) -> Result<()> {
        let lists = plan::embedding_backward_lists(
            dtable.len(),
            &ids.host,
            dy.len(),
            d,
            factors.map(|f| f.len()),
            &groups.layout,
            rows_per_example,
        )?;
        let Some(lists) = lists else { return Ok(()) };
        let op = "embedding_backward";
        let used = self.upload_vec(op, &lists.used)?;
        let starts = self.upload_vec(op, &lists.starts)?;
        let rows = self.upload_vec(op, &lists.rows)?;
        let slots = self.upload_vec(op, &lists.slots)?;
        let chunk_begin = self.upload_vec(op, &lists.chunk_begin)?;
        let chunk_end = self.upload_vec(op, &lists.chunk_end)?;
        let slices = plan::ScatterSlices {
            used: self.slice(&used),
            starts: self.slice(&starts),
            rows: self.slice(&rows),
            slots: self.slice(&slots),
            chunk_begin: self.slice(&chunk_begin),
            chunk_end: self.slice(&chunk_end),
        };
        let factors = factors.map_or(Slice { ptr: 0, len: 0 }, |f| self.slice(f));
        let len = lists.chunk_begin.len().checked_mul(d).ok_or(KernelError::OutOfMemory {
            op,
            elements: usize::MAX,
            element_bytes: 4,
        })?;
        // written whole by the first launch before the second reads it
        let sums = self.timed("(alloc)", || self.alloc_unset::<f32>(op, len))?;
        let groups = self.slice(&groups.example_group);
        let (dy, partial) = (self.slice(dy), self.slice(&sums));
        let geo = Geometry::DEVICE;
        self.run(plan::embedding_backward_chunks(partial, dy, factors, groups, &slices, d, rows_per_example, geo)?)?;
        let table = self.slice(dtable);
        self.run(plan::embedding_backward(table, dy, factors, groups, &slices, partial, d, rows_per_example, geo)?)?;
        // the lists and chunk sums are freed when this returns: on the stream, after the kernels that
        // read them
        Ok(())
    }
    fn embedding_group_sq_norms(
        &self,
        out: &mut CudaBuf,
        ids: &CudaIds,
        dy: &CudaBuf,
        d: usize,
        groups: &CudaGroups,
        rows_per_example: usize,
    ) -> Result<()> {
        let order = plan::embedding_group_order(out.len(), &ids.host, dy.len(), d, &groups.layout, rows_per_example)?;
        let order = self.upload_vec("embedding_group_sq_norms", &order)?;
        self.run(plan::embedding_group_sq_norms(
            self.slice(out),
            self.slice(&ids.dev),
            self.slice(dy),
            self.slice(&groups.offsets),
            self.slice(&order),
            d,
            rows_per_example,
            Geometry::DEVICE,
        )?)
    }

    // ---- pooling and losses ----

    fn masked_mean_pool_forward(
        &self,
        out: &mut CudaBuf,
        h: &CudaBuf,
        mask: &CudaBuf,
        t: usize,
        c: usize,
    ) -> Result<()> {
        let out = self.slice(out);
        self.run(plan::masked_mean_pool_forward(out, self.slice(h), self.slice(mask), t, c, Geometry::DEVICE)?)
    }
    fn masked_mean_pool_backward(
        &self,
        dh: &mut CudaBuf,
        dout: &CudaBuf,
        mask: &CudaBuf,
        t: usize,
        c: usize,
    ) -> Result<()> {
        let dh = self.slice(dh);
        self.run(plan::masked_mean_pool_backward(dh, self.slice(dout), self.slice(mask), t, c, Geometry::DEVICE)?)
    }
    fn bce_with_logits(
        &self,
        losses: &mut CudaBuf,
        dlogits: &mut CudaBuf,
        logits: &CudaBuf,
        targets: &CudaBuf,
        grad_scale: f32,
    ) -> Result<()> {
        let (l, d) = (self.slice(losses), self.slice(dlogits));
        self.run(plan::bce_with_logits(l, d, self.slice(logits), self.slice(targets), grad_scale, Geometry::DEVICE)?)
    }
    fn regression_loss(
        &self,
        losses: &mut CudaBuf,
        dlogits: &mut CudaBuf,
        preds: &CudaBuf,
        targets: &CudaBuf,
        huber: Option<f32>,
        grad_scale: f32,
    ) -> Result<()> {
        let (l, d) = (self.slice(losses), self.slice(dlogits));
        let (p, t) = (self.slice(preds), self.slice(targets));
        self.run(plan::regression_loss(l, d, p, t, huber, grad_scale, Geometry::DEVICE)?)
    }
    fn cross_entropy(
        &self,
        losses: &mut CudaBuf,
        dlogits: &mut CudaBuf,
        logits: &CudaBuf,
        classes: &CudaIds,
        k: usize,
        grad_scale: f32,
    ) -> Result<()> {
        let (l, d) = (self.slice(losses), self.slice(dlogits));
        let c = self.slice(&classes.dev);
        self.run(plan::cross_entropy(l, d, self.slice(logits), c, &classes.host, k, grad_scale, Geometry::DEVICE)?)
    }

    // ---- recurrent ----

    #[allow(clippy::too_many_arguments)]
    fn gru_step_forward(
        &self,
        h: &mut CudaBuf,
        h_prev: &mut CudaBuf,
        gates: &mut CudaBuf,
        gi: &CudaBuf,
        gh: &CudaBuf,
        b: usize,
        steps: usize,
        t: usize,
        hidden: usize,
    ) -> Result<()> {
        let (h, h_prev, gates) = (self.slice(h), self.slice(h_prev), self.slice(gates));
        let (gi, gh) = (self.slice(gi), self.slice(gh));
        self.run(plan::gru_step_forward(h, h_prev, gates, gi, gh, b, steps, t, hidden, Geometry::DEVICE)?)
    }
    #[allow(clippy::too_many_arguments)]
    fn gru_step_backward(
        &self,
        dgi: &mut CudaBuf,
        dgh: &mut CudaBuf,
        carry: &mut CudaBuf,
        dy: &CudaBuf,
        gates: &CudaBuf,
        gh: &CudaBuf,
        h_prev: &CudaBuf,
        b: usize,
        steps: usize,
        t: usize,
        hidden: usize,
    ) -> Result<()> {
        let (dgi, dgh, carry) = (self.slice(dgi), self.slice(dgh), self.slice(carry));
        let (dy, gates, gh, h_prev) = (self.slice(dy), self.slice(gates), self.slice(gh), self.slice(h_prev));
        self.run(plan::gru_step_backward(
            dgi,
            dgh,
            carry,
            dy,
            gates,
            gh,
            h_prev,
            b,
            steps,
            t,
            hidden,
            Geometry::DEVICE,
        )?)
    }

    // ---- noise and optimizers ----

    fn add_normal(&self, buf: &mut CudaBuf, std: f32, scale: f32, grid: f64, key: &NoiseKey) -> Result<()> {
        self.run(plan::add_normal(self.slice(buf), std, scale, grid, key, Geometry::DEVICE)?)
    }
    #[allow(clippy::too_many_arguments)]
    fn sgd_step(
        &self,
        w: &mut CudaBuf,
        g: &CudaBuf,
        m: &mut CudaBuf,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        first_step: bool,
    ) -> Result<()> {
        let (w, m) = (self.slice(w), self.slice(m));
        self.run(plan::sgd_step(w, self.slice(g), m, lr, momentum, weight_decay, first_step, Geometry::DEVICE)?)
    }
    fn adamw_step(
        &self,
        w: &mut CudaBuf,
        g: &CudaBuf,
        m: &mut CudaBuf,
        v: &mut CudaBuf,
        h: &AdamW,
        t: u64,
    ) -> Result<()> {
        let (w, m, v) = (self.slice(w), self.slice(m), self.slice(v));
        self.run(plan::adamw_step(w, self.slice(g), m, v, h, t, Geometry::DEVICE)?)
    }
}
