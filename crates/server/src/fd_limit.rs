//! The open-file limit. Each connection (and each test client) is a file descriptor; the
//! soft limit a shell hands out (often 1024) is lifted to the hard one so that the
//! configured connection limits are what apply. Used by chingu-server and chingu-cli.

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
#[allow(unsafe_code)]
pub fn raise() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let now = super::raise().expect("getrlimit works here");
        assert!(now >= 64, "a usable limit: {now}");
        assert_eq!(
            super::raise().expect("again"),
            now,
            "raising twice changes nothing"
        );
    }
}
