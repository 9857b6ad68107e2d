fn main() {
    raise_fd_limit();
    std::process::exit(tranche::run(std::env::args_os()));
}

/// One connection per host: raise the soft limit of open files to the hard one, as a release to
/// a thousand hosts needs more than the usual 1024.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
