//! What every bench's `main` does: criterion's, after setting up the
//! allocator as the `klp` binary does, so that the figures are those of
//! what users run. Without it, each iteration at `vmlinux.o` scale faulted
//! in its hundreds of megabytes again, which the binary does not.

/// `criterion_main!` after [`klp::pipeline::keep_freed_memory`].
macro_rules! main_like_klp {
    ($($group:path),+ $(,)?) => {
        fn main() {
            klp::pipeline::keep_freed_memory();
            $($group();)+
            criterion::Criterion::default().configure_from_args().final_summary();
        }
    };
}
