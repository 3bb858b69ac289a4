//! Builds the emulator process of the CUDA kernel tests (kernels/src/cuda/emu/harness.cc with every
//! .cu of kernels/src/cuda and emu/planted.cu) three times with the C++ compiler the `cc` crate finds:
//! plain, under AddressSanitizer + UndefinedBehaviorSanitizer, and under ThreadSanitizer. A sanitizer
//! build that the compiler cannot do is recorded with the compiler's reason (the tests then say so and
//! skip it); the plain build must succeed.

use std::path::PathBuf;
use std::process::Command;

fn kernel_names(src: &str) -> Vec<String> {
    const MARK: &str = "extern \"C\" __global__ void ";
    src.lines()
        .filter_map(|l| l.trim_start().strip_prefix(MARK))
        .filter_map(|rest| rest.split('(').next())
        .map(|n| n.trim().to_string())
        .collect()
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let cuda = manifest.join("../src/cuda").canonicalize().expect("kernels/src/cuda");
    let emu = cuda.join("emu");
    println!("cargo:rerun-if-changed={}", cuda.display());
    println!("cargo:rerun-if-changed=build.rs");

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&cuda)
        .expect("read kernels/src/cuda")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();
    let mut inc = format!("#include \"{}\"\n", cuda.join("prelude.cuh").display());
    let (mut kernels, mut table) = (Vec::new(), String::from("#define EMU_KERNEL_TABLE(X)"));
    for (path, backend) in sources.iter().map(|p| (p.clone(), true)).chain([(emu.join("planted.cu"), false)]) {
        let text = std::fs::read_to_string(&path).unwrap();
        inc += &format!("#include \"{}\"\n", path.display());
        for k in kernel_names(&text) {
            table += &format!(" X({k})");
            if backend {
                kernels.push(k);
            }
        }
    }
    inc += &table;
    inc += "\n";
    let inc_path = out.join("emu_kernels.inc");
    std::fs::write(&inc_path, inc).unwrap();

    let compiler = cc::Build::new().cpp(true).cargo_metadata(false).get_compiler();
    let build = |flavor: &str, flags: &[&str]| -> (String, Result<PathBuf, String>) {
        let exe = out.join(format!("cuda-emu-{flavor}"));
        let mut cmd: Command = compiler.to_command();
        cmd.args(["-std=c++20", "-pthread", "-ffp-contract=off", "-w"])
            .arg(format!("-I{}", emu.display()))
            .arg(format!("-DEMU_KERNELS_INC=\"{}\"", inc_path.display()))
            .args(flags)
            .arg(emu.join("harness.cc"))
            .arg("-o")
            .arg(&exe);
        let result = match cmd.output() {
            Ok(o) if o.status.success() => Ok(exe),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).lines().take(3).collect::<Vec<_>>().join(" / ")),
            Err(e) => Err(format!("cannot run {}: {e}", compiler.path().display())),
        };
        (flavor.to_string(), result)
    };
    let flavors: [(&str, &[&str]); 3] = [
        ("plain", &["-O2"]),
        (
            "address",
            &["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
        ),
        ("thread", &["-O1", "-g", "-fsanitize=thread"]),
    ];
    let built: Vec<(String, Result<PathBuf, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = flavors.iter().map(|(f, flags)| s.spawn(move || build(f, flags))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut rs = String::new();
    rs += &format!(
        "/// The backend's kernels, as the emulator knows them.\npub const KERNELS: &[&str] = &{kernels:?};\n"
    );
    let files: Vec<String> = sources.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    rs += &format!("/// The .cu files of kernels/src/cuda the emulator was built from.\npub const SOURCES: &[&str] = &{files:?};\n");
    for (flavor, result) in &built {
        let value = match result {
            Ok(p) => format!("Ok({:?})", p.display().to_string()),
            Err(e) => format!("Err({e:?})"),
        };
        rs += &format!("const {}: Result<&str, &str> = {value};\n", flavor.to_uppercase());
    }
    std::fs::write(out.join("emu_build.rs"), rs).unwrap();
    if let Err(e) = &built[0].1 {
        panic!("the CUDA emulator (kernels/src/cuda/emu/harness.cc) does not compile: {e}");
    }
}
