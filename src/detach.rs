//! Answer before the teardown: a command that maps two `vmlinux.o` and
//! builds 150 MB of indexes spends 25-30 ms after its last output
//! unmapping them, one core busy and the caller still waiting. As mold
//! and wild do, the work runs in a child process; the parent exits with
//! the child's status as soon as the child has written everything, and
//! the child's exit (the kernel freeing its memory) follows unobserved.
//! The work done is the same; only the caller stops waiting for the part
//! that gives it nothing.
//!
//! Only for the binary's `main`, before any thread exists: a fork copies
//! only the calling thread, and rayon's pool is made later, in the child.

use std::io::Write;

/// Run `work` in a child process and return its exit status, the child's
/// memory freed after this process has gone. Where a fork or a pipe cannot
/// be had, `work` simply runs here.
///
/// In the parent this never returns: it exits with the child's status,
/// or, if the child died before reporting one (a signal, an abort), with
/// the status the child died with.
pub fn run_detached(work: impl FnOnce() -> u8) -> u8 {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return work();
    }
    let [status_read, status_write] = fds;
    // SAFETY: `getpid` has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: no other thread exists yet (see the module comment), so the
    // child's copy of the address space holds no lock another thread had.
    match unsafe { libc::fork() } {
        -1 => {
            close(status_read);
            close(status_write);
            work()
        }
        0 => {
            close(status_read);
            in_child(parent, status_write, work)
        }
        child => {
            close(status_write);
            in_parent(child, status_read)
        }
    }
}

fn in_child(parent: libc::pid_t, status_write: libc::c_int, work: impl FnOnce() -> u8) -> u8 {
    // A caller that kills the parent (a timeout, Ctrl-C in another
    // process group) means the work too; the check after the `prctl`
    // catches a parent gone before it took effect.
    // SAFETY: PR_SET_PDEATHSIG takes a signal number; `getppid` has no
    // preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
    let code = work();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // The caller may read our output until every copy of its pipe is
    // closed: hand over /dev/null for the rest of this process's life.
    release_standard_streams();
    // The parent exits as soon as it has the status; this process's own
    // exit (its exit handlers, a coverage tool's among them) must not die
    // with it.
    // SAFETY: as above; then writes one byte from a live local to a
    // descriptor we own.
    let _ = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, 0 as libc::c_ulong);
        libc::write(status_write, (&code as *const u8).cast(), 1)
    };
    close(status_write);
    code
}

fn in_parent(child: libc::pid_t, status_read: libc::c_int) -> ! {
    let mut code = 0u8;
    loop {
        // SAFETY: reads at most one byte into a live local.
        let n = unsafe { libc::read(status_read, (&mut code as *mut u8).cast(), 1) };
        if n == 1 {
            // SAFETY: `_exit` ends this process without running its exit
            // handlers, which belong to the child's work, not to ours.
            unsafe { libc::_exit(i32::from(code)) }
        }
        if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    // The child ended without a status: report its end as ours.
    let mut status = 0;
    // SAFETY: waits for our own child into a live local.
    while unsafe { libc::waitpid(child, &mut status, 0) } == -1
        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
    {}
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // SAFETY: restores the default action of a signal and raises it on
        // this process, which then dies as the child did.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        // A signal whose default is not to terminate: the shell's convention.
        // SAFETY: as below.
        unsafe { libc::_exit(128 + signal) }
    }
    // SAFETY: `_exit` ends this process, as in the loop above.
    unsafe { libc::_exit(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 1 }) }
}

/// Point standard input, output and error at /dev/null.
fn release_standard_streams() {
    // SAFETY: opens a constant path; `dup2` onto the standard descriptors
    // replaces them atomically, so a write racing with it (there is none:
    // the work is done) would go to one or the other.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            return;
        }
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        close(null);
    }
}

fn close(fd: libc::c_int) {
    // SAFETY: closes a descriptor this module opened and no one else uses.
    unsafe { libc::close(fd) };
}
