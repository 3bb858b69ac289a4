//! What the node can schedule: CPU slots (cores, memory), CUDA GPUs found through NVML (or the CUDA
//! driver API) loaded at run time, MIG instances where a GPU has them, and the NPUs the node config
//! declares. A machine with no GPU or no driver is a normal case: the CUDA list is empty and says why.

use super::config::NodeConfig;
use serde::Serialize;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub cpu: CpuInfo,
    pub cuda: Vec<Gpu>,
    /// why no CUDA device is listed, when none is
    pub cuda_note: Option<String>,
    /// whether medtrain's CUDA backend can run here: the kernels' own probe (driver version, NVRTC,
    /// cuBLAS), the same one `--backend cuda` asks
    pub cuda_backend: String,
    pub npu: Vec<NpuInfo>,
    /// the schedulable units per device class
    pub classes: Vec<DeviceClass>,
    /// `None`: jobs run in a sandbox; else why the kernel refused it
    pub sandbox_refused: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuInfo {
    pub cores: u32,
    pub memory_bytes: u64,
    pub slots: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    pub ordinal: u32,
    pub name: String,
    pub uuid: String,
    pub memory_bytes: u64,
    pub mig: Vec<MigInstance>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigInstance {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NpuInfo {
    pub kind: String,
    pub memory_gib: f64,
    pub count: u32,
}

/// One device class: its name and the ids a job is given (CUDA ordinals or MIG UUIDs, NPU ordinals,
/// CPU slot numbers).
#[derive(Debug, Clone, Serialize)]
pub struct DeviceClass {
    pub class: String,
    pub units: Vec<String>,
    /// the environment variable that tells a job its units
    pub visible_env: String,
}

impl Inventory {
    pub fn class(&self, name: &str) -> Option<&DeviceClass> {
        self.classes.iter().find(|c| c.class == name)
    }
}

/// The node's devices; `sandbox_refused` is filled by the caller (it needs a probe run).
pub fn inventory(cfg: Option<&NodeConfig>) -> Inventory {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let slots = cfg.and_then(|c| c.node.cpu_slots).unwrap_or(cores);
    let cpu = CpuInfo { cores, memory_bytes: mem_total(), slots };
    let (cuda, cuda_note) = match nvml::gpus() {
        Ok(g) => (g, None),
        Err(nvml_why) => match driver::gpus() {
            Ok(g) => (g, None),
            Err(drv_why) => (Vec::new(), Some(format!("no CUDA device: {nvml_why}; {drv_why}"))),
        },
    };
    let cuda_note = cuda_note.or_else(|| cuda.is_empty().then(|| "the driver reports no CUDA device".to_string()));
    let npu: Vec<NpuInfo> = cfg
        .map(|c| {
            c.npus.iter().map(|n| NpuInfo { kind: n.kind.clone(), memory_gib: n.memory_gib, count: n.count }).collect()
        })
        .unwrap_or_default();
    let mut classes = vec![DeviceClass {
        class: "cpu".into(),
        units: (0..slots).map(|i| i.to_string()).collect(),
        visible_env: "MEDTRAIN_CPU_SLOTS".into(),
    }];
    if !cuda.is_empty() {
        // a GPU in MIG mode is scheduled by its instances, the others whole
        let units = cuda
            .iter()
            .flat_map(|g| {
                if g.mig.is_empty() {
                    vec![g.ordinal.to_string()]
                } else {
                    g.mig.iter().map(|m| m.uuid.clone()).collect()
                }
            })
            .collect();
        classes.push(DeviceClass { class: "cuda".into(), units, visible_env: "CUDA_VISIBLE_DEVICES".into() });
    }
    for n in cfg.map(|c| c.npus.as_slice()).unwrap_or_default() {
        let env = n
            .visible_env
            .clone()
            .unwrap_or_else(|| format!("MEDTRAIN_VISIBLE_{}", n.kind.to_ascii_uppercase().replace(['-', '.'], "_")));
        match classes.iter_mut().find(|c| c.class == n.kind) {
            Some(c) => {
                let start = c.units.len() as u32;
                c.units.extend((start..start + n.count).map(|i| i.to_string()))
            }
            None => classes.push(DeviceClass {
                class: n.kind.clone(),
                units: (0..n.count).map(|i| i.to_string()).collect(),
                visible_env: env,
            }),
        }
    }
    let cuda_backend = match kernels::cuda::probe(0) {
        Ok(d) => format!(
            "ready: {} (sm_{}{}), driver CUDA {}.{}, NVRTC {}.{}",
            d.name,
            d.compute_capability.0,
            d.compute_capability.1,
            d.driver_version / 1000,
            d.driver_version % 1000 / 10,
            d.nvrtc_version.0,
            d.nvrtc_version.1
        ),
        Err(e) => format!("unavailable: {e}"),
    };
    Inventory { cpu, cuda, cuda_note, cuda_backend, npu, classes, sandbox_refused: None }
}

fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A shared library opened with dlopen, closed on drop.
struct Lib(*mut c_void);

impl Lib {
    fn open(names: &[&CStr]) -> Result<Self, String> {
        for n in names {
            // SAFETY: dlopen with a NUL-terminated name; a null result is handled
            let h = unsafe { libc::dlopen(n.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if !h.is_null() {
                return Ok(Lib(h));
            }
        }
        Err(format!("{} not found", names[0].to_string_lossy()))
    }

    /// The symbol `name` as a function pointer of type `F`.
    ///
    /// SAFETY (caller): `F` must be the symbol's true C signature.
    unsafe fn sym<F: Copy>(&self, name: &CStr) -> Result<F, String> {
        let p = unsafe { libc::dlsym(self.0, name.as_ptr()) };
        if p.is_null() {
            return Err(format!("{} lacks {}", "library", name.to_string_lossy()));
        }
        debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
    }
}

impl Drop for Lib {
    fn drop(&mut self) {
        // SAFETY: the handle came from dlopen and no symbol outlives self
        unsafe { libc::dlclose(self.0) };
    }
}

fn c_text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    // device names and UUIDs are ASCII; anything else is shown escaped rather than trusted
    bytes.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect()
}

mod nvml {
    use super::*;
    type Device = *mut c_void;
    #[repr(C)]
    struct Memory {
        total: u64,
        free: u64,
        used: u64,
    }
    const SUCCESS: c_int = 0;

    pub fn gpus() -> Result<Vec<Gpu>, String> {
        let lib = Lib::open(&[c"libnvidia-ml.so.1", c"libnvidia-ml.so"]).map_err(|e| format!("NVML: {e}"))?;
        // SAFETY: the signatures are NVML's (nvml.h, API v2 names)
        unsafe {
            let init: unsafe extern "C" fn() -> c_int = lib.sym(c"nvmlInit_v2")?;
            let shutdown: unsafe extern "C" fn() -> c_int = lib.sym(c"nvmlShutdown")?;
            let count: unsafe extern "C" fn(*mut c_uint) -> c_int = lib.sym(c"nvmlDeviceGetCount_v2")?;
            let by_index: unsafe extern "C" fn(c_uint, *mut Device) -> c_int =
                lib.sym(c"nvmlDeviceGetHandleByIndex_v2")?;
            let name: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> c_int = lib.sym(c"nvmlDeviceGetName")?;
            let uuid: unsafe extern "C" fn(Device, *mut c_char, c_uint) -> c_int = lib.sym(c"nvmlDeviceGetUUID")?;
            let memory: unsafe extern "C" fn(Device, *mut Memory) -> c_int = lib.sym(c"nvmlDeviceGetMemoryInfo")?;
            let mig_mode: Option<unsafe extern "C" fn(Device, *mut c_uint, *mut c_uint) -> c_int> =
                lib.sym(c"nvmlDeviceGetMigMode").ok();
            let mig_max: Option<unsafe extern "C" fn(Device, *mut c_uint) -> c_int> =
                lib.sym(c"nvmlDeviceGetMaxMigDeviceCount").ok();
            let mig_at: Option<unsafe extern "C" fn(Device, c_uint, *mut Device) -> c_int> =
                lib.sym(c"nvmlDeviceGetMigDeviceHandleByIndex").ok();
            let rc = init();
            if rc != SUCCESS {
                return Err(format!("NVML: nvmlInit failed (error {rc}: no driver loaded?)"));
            }
            let describe = |d: Device| {
                let mut n = [0 as c_char; 96];
                let mut u = [0 as c_char; 96];
                let mut m = Memory { total: 0, free: 0, used: 0 };
                name(d, n.as_mut_ptr(), 96);
                uuid(d, u.as_mut_ptr(), 96);
                memory(d, &mut m);
                (c_text(&n), c_text(&u), m.total)
            };
            let mut n: c_uint = 0;
            let mut out = Vec::new();
            if count(&mut n) == SUCCESS {
                for i in 0..n.min(1024) {
                    let mut d: Device = std::ptr::null_mut();
                    if by_index(i, &mut d) != SUCCESS {
                        continue;
                    }
                    let (name, uuid, memory_bytes) = describe(d);
                    let mut mig = Vec::new();
                    let (mut cur, mut pending) = (0, 0);
                    if let (Some(mode), Some(max), Some(at)) = (mig_mode, mig_max, mig_at) {
                        if mode(d, &mut cur, &mut pending) == SUCCESS && cur == 1 {
                            let mut m: c_uint = 0;
                            max(d, &mut m);
                            for k in 0..m.min(64) {
                                let mut md: Device = std::ptr::null_mut();
                                if at(d, k, &mut md) == SUCCESS {
                                    let (name, uuid, memory_bytes) = describe(md);
                                    mig.push(MigInstance { index: k, name, uuid, memory_bytes });
                                }
                            }
                        }
                    }
                    out.push(Gpu { ordinal: i, name, uuid, memory_bytes, mig });
                }
            }
            shutdown();
            Ok(out)
        }
    }
}

mod driver {
    use super::*;
    const SUCCESS: c_int = 0;

    pub fn gpus() -> Result<Vec<Gpu>, String> {
        let lib = Lib::open(&[c"libcuda.so.1", c"libcuda.so"]).map_err(|e| format!("CUDA driver: {e}"))?;
        // SAFETY: the signatures are the CUDA driver API's (cuda.h)
        unsafe {
            let init: unsafe extern "C" fn(c_uint) -> c_int = lib.sym(c"cuInit")?;
            let count: unsafe extern "C" fn(*mut c_int) -> c_int = lib.sym(c"cuDeviceGetCount")?;
            let get: unsafe extern "C" fn(*mut c_int, c_int) -> c_int = lib.sym(c"cuDeviceGet")?;
            let name: unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int = lib.sym(c"cuDeviceGetName")?;
            let mem: unsafe extern "C" fn(*mut usize, c_int) -> c_int = lib.sym(c"cuDeviceTotalMem_v2")?;
            let uuid: unsafe extern "C" fn(*mut [u8; 16], c_int) -> c_int = lib.sym(c"cuDeviceGetUuid")?;
            let rc = init(0);
            if rc != SUCCESS {
                return Err(format!("CUDA driver: cuInit failed (error {rc})"));
            }
            let mut n = 0;
            if count(&mut n) != SUCCESS {
                return Ok(Vec::new());
            }
            let mut out = Vec::new();
            for i in 0..n.clamp(0, 1024) {
                let mut d = 0;
                if get(&mut d, i) != SUCCESS {
                    continue;
                }
                let mut nb = [0 as c_char; 256];
                let mut bytes = 0usize;
                let mut u = [0u8; 16];
                name(nb.as_mut_ptr(), 256, d);
                mem(&mut bytes, d);
                uuid(&mut u, d);
                let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
                let uuid = format!("GPU-{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
                out.push(Gpu {
                    ordinal: i as u32,
                    name: c_text(&nb),
                    uuid,
                    memory_bytes: bytes as u64,
                    mig: Vec::new(),
                });
            }
            Ok(out)
        }
    }
}

/// `medtrain node devices` as text.
pub fn render(inv: &Inventory) -> String {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let mut s = format!(
        "cpu   {} cores, {:.1} GiB memory, {} job slots\n",
        inv.cpu.cores,
        gib(inv.cpu.memory_bytes),
        inv.cpu.slots
    );
    for g in &inv.cuda {
        s += &format!("cuda  {}  {}  {:.1} GiB  {}\n", g.ordinal, g.name, gib(g.memory_bytes), g.uuid);
        for m in &g.mig {
            s += &format!("      MIG {}  {}  {:.1} GiB  {}\n", m.index, m.name, gib(m.memory_bytes), m.uuid);
        }
    }
    if let Some(n) = &inv.cuda_note {
        s += &format!("cuda  none ({n})\n");
    }
    s += &format!("cuda backend: {}\n", inv.cuda_backend);
    for n in &inv.npu {
        s += &format!("npu   {} x {}, {:.1} GiB each (declared in the node config)\n", n.count, n.kind, n.memory_gib);
    }
    match &inv.sandbox_refused {
        None => s += "sandbox: jobs run in new network and mount namespaces (loopback only, run directory the only writable place), no new privileges\n",
        Some(why) => s += &format!("SANDBOX UNAVAILABLE: {why}: jobs would run WITHOUT network or filesystem isolation\n"),
    }
    s
}
