fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    if !dir.join("bin").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        println!("{:?}", namespaces::host::populate_rootfs(&dir).unwrap());
    }
    let args: Vec<String> = std::env::args().skip(2).collect();
    let mut c = namespaces::ContainerConfig::new(&dir, args);
    c.hostname = Some("box".into());
    let r = namespaces::spawn(&c, Default::default());
    match r {
        Ok(r) => println!("exit {:?}", r.wait()),
        Err(e) => println!("error {e} ({})", e.exit_code()),
    }
}
