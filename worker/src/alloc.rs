//! How the worker asks glibc's allocator to keep memory it frees.

/// Keeps freed memory in the process for reuse instead of handing it back to the kernel.
///
/// By default glibc serves allocations above a threshold (128 KiB, raised as such blocks are
/// freed) with fresh `mmap`s and trims the top of its heap when much of it is free, so a
/// worker that fills and frees its sort buffers over and over had the kernel zero every page
/// again: 40 % of a 2 GiB concat's CPU samples were in `clear_page_erms`, and its system time
/// was 11–14 s of 29 s. With blocks up to 32 MiB taken from the heap and the heap trimmed
/// only above 2 GiB free, system time fell to about 5 s and wall time by a third
/// (docs/benchmarks.md, "At the default 512 MiB and at 2 GiB, two data shapes"). Peak RSS
/// is unchanged: memory is reused, not added. Does nothing when `GLIBC_TUNABLES`,
/// `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` is set (they decide), nor on other
/// allocators.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let set = |name| std::env::var_os(name).is_some();
            if set("GLIBC_TUNABLES")
                || set("MALLOC_MMAP_THRESHOLD_")
                || set("MALLOC_TRIM_THRESHOLD_")
            {
                return;
            }
            // SAFETY: mallopt only sets allocator parameters; it may be called at any time
            // from any thread. 32 MiB is the largest mmap threshold glibc accepts on 64-bit.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
            }
        });
    }
}
