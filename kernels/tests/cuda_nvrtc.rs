//! The CUDA kernels through NVIDIA's own compilers, without a GPU: every module of the backend is
//! compiled by NVRTC exactly as `Cuda` compiles it (`source::compile_ptx`, the production options) for
//! sm_80 (A100) and sm_90 (H100/H200), and `ptxas -v` assembles the PTX, failing on register spills
//! and on any other use of local memory (a stack frame): every kernel here is on the hot path of a step.
//!
//! NVRTC and ptxas come from the PyPI wheels that scripts/ensure-nvrtc.sh installs: put its
//! MEDTRAIN_NVRTC_LIB_DIR on LD_LIBRARY_PATH and set MEDTRAIN_PTXAS (scripts/test.sh does). Without
//! them the tests say so and pass; with MEDTRAIN_REQUIRE_NVRTC=1 (CI) they fail instead.

use kernels::cuda::source::{self, Module};
use std::process::Command;
use std::time::Instant;

const ARCHS: [(u32, u32); 2] = [(8, 0), (9, 0)];

fn required() -> bool {
    std::env::var("MEDTRAIN_REQUIRE_NVRTC").is_ok_and(|v| v == "1")
}

/// Whether libnvrtc loads; `false` (after saying why) means skip.
fn nvrtc_present() -> bool {
    // SAFETY: only tries to load the library
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return true;
    }
    let msg = "libnvrtc not found: run scripts/ensure-nvrtc.sh and put its MEDTRAIN_NVRTC_LIB_DIR on LD_LIBRARY_PATH";
    assert!(!required(), "MEDTRAIN_REQUIRE_NVRTC=1, but {msg}");
    eprintln!("skipped: {msg}");
    false
}

/// ptxas from MEDTRAIN_PTXAS or PATH; `None` (after saying why) means skip.
fn ptxas() -> Option<String> {
    let exe = std::env::var("MEDTRAIN_PTXAS").unwrap_or_else(|_| "ptxas".into());
    if Command::new(&exe).arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some(exe);
    }
    let msg = format!("ptxas not found ({exe}): run scripts/ensure-nvrtc.sh and set MEDTRAIN_PTXAS");
    assert!(!required(), "MEDTRAIN_REQUIRE_NVRTC=1, but {msg}");
    eprintln!("skipped: {msg}");
    None
}

#[test]
fn production_options_keep_the_cpus_rounding() {
    for (major, minor) in ARCHS {
        let o = source::compile_options(major, minor);
        assert_eq!(
            (o.ftz, o.prec_div, o.prec_sqrt, o.fmad, o.use_fast_math),
            (Some(false), Some(true), Some(true), Some(false), Some(false))
        );
        assert!(o.options.contains(&format!("--gpu-architecture=sm_{major}{minor}")), "{:?}", o.options);
    }
}

#[test]
fn every_module_compiles_with_nvrtc_for_sm80_and_sm90() {
    if !nvrtc_present() {
        return;
    }
    for (major, minor) in ARCHS {
        for m in Module::ALL {
            let t = Instant::now();
            let ptx = source::compile_ptx(m, major, minor)
                .unwrap_or_else(|e| panic!("{} for sm_{major}{minor}: {e}", m.file()));
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let ptx = ptx.to_src();
            eprintln!("nvrtc {} sm_{major}{minor}: {ms:.0} ms, {} bytes of PTX", m.file(), ptx.len());
            assert!(
                ptx.contains(&format!(".target sm_{major}{minor}")),
                "{}: {}",
                m.file(),
                &ptx[..ptx.len().min(400)]
            );
            for k in m.kernels() {
                assert!(ptx.contains(&format!(".entry {k}(")), "{}: no entry {k}", m.file());
            }
        }
    }
}

#[test]
fn the_ptx_does_not_depend_on_fma_contraction() {
    // every product and sum of the kernels is an explicitly rounded intrinsic, so --fmad=true (what
    // a build without the production options would do) gives the same PTX: the CPU's bits do not
    // hang on one flag
    if !nvrtc_present() {
        return;
    }
    for m in Module::ALL {
        let strict = source::compile_ptx(m, 9, 0).unwrap().to_src();
        let opts = cudarc::nvrtc::CompileOptions {
            fmad: Some(true),
            name: Some(m.file().into()),
            ..source::compile_options(9, 0)
        };
        let contracted = cudarc::nvrtc::compile_ptx_with_opts(m.source(), opts).unwrap().to_src();
        assert_eq!(strict, contracted, "{}: --fmad changes the PTX", m.file());
    }
}

/// `ptxas -v` of one kernel: (registers, stack frame bytes, spill store bytes, spill load bytes).
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    registers: u32,
    stack: u32,
    spill_stores: u32,
    spill_loads: u32,
}

/// The number before `unit` in `line` ("0 bytes stack frame" -> 0 for unit "bytes stack frame").
fn number_before(line: &str, unit: &str) -> Option<u32> {
    let head = &line[..line.find(unit)?];
    head.split(|c: char| !c.is_ascii_digit()).rfind(|s| !s.is_empty())?.parse().ok()
}

fn parse_ptxas(log: &str) -> Vec<(String, Usage)> {
    let mut out: Vec<(String, Usage)> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            out.push((rest.split('\'').next().unwrap_or("").to_string(), Usage::default()));
        } else if let Some((_, u)) = out.last_mut() {
            if let Some(v) = number_before(line, "bytes stack frame") {
                u.stack = v;
                u.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
                u.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
            }
            if let Some(v) = number_before(line, "registers") {
                u.registers = v;
            }
        }
    }
    out
}

#[test]
fn ptxas_assembles_every_kernel_without_spills() {
    if !nvrtc_present() {
        return;
    }
    let Some(ptxas) = ptxas() else { return };
    let dir = std::env::temp_dir().join(format!("medtrain-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (major, minor) in ARCHS {
        for m in Module::ALL {
            let path = dir.join(format!("{}.sm_{major}{minor}.ptx", m.file()));
            std::fs::write(&path, source::compile_ptx(m, major, minor).unwrap().to_src()).unwrap();
            let out = Command::new(&ptxas)
                .args([format!("-arch=sm_{major}{minor}"), "-v".into(), "-o".into(), "/dev/null".into()])
                .arg(&path)
                .output()
                .unwrap();
            let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "ptxas {}: {log}", m.file());
            let usage = parse_ptxas(&log);
            let names: Vec<&str> = usage.iter().map(|(n, _)| n.as_str()).collect();
            let mut want = m.kernels();
            want.sort();
            let mut got = names.clone();
            got.sort();
            assert_eq!(got, want, "ptxas {} sm_{major}{minor}: entries\n{log}", m.file());
            for (name, u) in &usage {
                eprintln!(
                    "ptxas sm_{major}{minor} {name}: {} registers, {} bytes stack, {} / {} bytes spilled (stores / loads)",
                    u.registers, u.stack, u.spill_stores, u.spill_loads
                );
                assert!(u.registers > 0, "{name}: no register count parsed from\n{log}");
                assert_eq!(
                    (u.spill_stores, u.spill_loads),
                    (0, 0),
                    "{name} spills to local memory on sm_{major}{minor}\n{log}"
                );
                // no local arrays either: a stack frame is local memory, as slow as a spill
                assert_eq!(u.stack, 0, "{name} has a {} byte stack frame on sm_{major}{minor}\n{log}", u.stack);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_ptxas_log_parser_reads_spills() {
    // the parser itself, on ptxas' format, so that a spill cannot pass unread
    let log = "ptxas info    : Compiling entry function 'k' for 'sm_90'\nptxas info    : Function properties for k\n    \
               24 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\nptxas info    : Used 255 registers, 380 bytes cmem[0]\n";
    let u = parse_ptxas(log);
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].1.registers, u[0].1.stack, u[0].1.spill_stores, u[0].1.spill_loads), (255, 24, 8, 12));
}
