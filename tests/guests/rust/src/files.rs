//! Files and directories in a preopened directory (argv[1], as the guest sees it): path_open
//! (create, truncate, append), fd_write, fd_read, fd_seek (start, end), fd_tell,
//! fd_filestat_set_size, fd_filestat_get, path_filestat_get, path_rename, path_unlink_file,
//! path_create_directory, fd_readdir, path_remove_directory. The host puts `host.txt` there
//! first; the guest leaves `renamed.txt` behind. Every language prints the same lines.
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};

fn read_rest(file: &mut File) -> String {
    let mut text = String::new();
    file.read_to_string(&mut text).expect("read");
    text
}

fn listing(dir: &str) -> String {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").file_name().into_string().unwrap())
        .collect();
    names.sort();
    names.join(" ")
}

fn kind(path: &str) -> &'static str {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => "dir",
        Ok(m) if m.is_file() => "file",
        Ok(_) => "other",
        Err(_) => "missing",
    }
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: files DIR");
    let path = |name: &str| format!("{dir}/{name}");

    let host = fs::read_to_string(path("host.txt")).expect("reading host.txt");
    print!("host.txt: {host}");

    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path("data.txt"))
        .expect("creating data.txt");
    let n = file.write(b"Hello, files!").expect("write");
    println!("write: {n}");
    file.seek(SeekFrom::Start(0)).expect("seek");
    println!("read: {}", read_rest(&mut file));
    println!("seek: {}", file.seek(SeekFrom::Start(7)).expect("seek"));
    println!("read: {}", read_rest(&mut file));
    println!("tell: {}", file.stream_position().expect("tell"));
    file.set_len(5).expect("set_len");
    let meta = file.metadata().expect("fstat");
    println!("truncate: size={}", meta.len());
    println!(
        "seek end-2: {}",
        file.seek(SeekFrom::End(-2)).expect("seek")
    );
    println!("read: {}", read_rest(&mut file));
    drop(file);

    let meta = fs::metadata(path("data.txt")).expect("stat");
    println!("stat: size={} type={}", meta.len(), kind(&path("data.txt")));
    let mut file = OpenOptions::new()
        .append(true)
        .open(path("data.txt"))
        .expect("opening for append");
    file.write_all(b", again").expect("append");
    drop(file);
    println!("append: {}", fs::read_to_string(path("data.txt")).unwrap());

    fs::rename(path("data.txt"), path("renamed.txt")).expect("rename");
    println!("rename: ok");
    println!("data.txt: {}", kind(&path("data.txt")));
    println!("renamed.txt: {}", kind(&path("renamed.txt")));

    fs::create_dir(path("sub")).expect("mkdir");
    println!("mkdir: ok");
    println!("sub: {}", kind(&path("sub")));
    File::create(path("sub/b.txt")).expect("create b.txt");
    File::create(path("sub/a.txt")).expect("create a.txt");
    fs::create_dir(path("sub/nested")).expect("mkdir nested");
    println!("readdir sub: {}", listing(&path("sub")));
    let refused = fs::remove_dir(path("sub")).is_err();
    println!("rmdir non-empty: {}", if refused { "error" } else { "ok" });
    fs::remove_file(path("sub/a.txt")).expect("unlink a.txt");
    fs::remove_file(path("sub/b.txt")).expect("unlink b.txt");
    println!("unlink: ok");
    fs::remove_dir(path("sub/nested")).expect("rmdir nested");
    fs::remove_dir(path("sub")).expect("rmdir sub");
    println!("rmdir: ok");
    println!("sub: {}", kind(&path("sub")));
    println!("readdir: {}", listing(&dir));
}
