//! A system notification for a friend's ring while the window is minimised or behind
//! others: on Linux through the desktop's notification service
//! (org.freedesktop.Notifications on the session bus), elsewhere not yet (the window
//! asks for attention instead). A desktop without the service is logged, not an error.

use std::time::Duration;

/// What the notification says, in the UI's language (`ko` or anything else: English).
pub fn ring_text(language: &str, name: &str) -> (String, String) {
    if language.starts_with("ko") {
        ("친구".into(), format!("{name}님이 전화를 걸었어요"))
    } else {
        ("Chingu".into(), format!("{name} is calling you"))
    }
}

/// Shows the notification on the user's session bus; gives up after two seconds
/// without an answer.
#[cfg(target_os = "linux")]
pub fn show(summary: &str, body: &str, expire: Duration) -> Result<u32, String> {
    let conn = dbus::blocking::Connection::new_session().map_err(|e| e.to_string())?;
    notify_on(&conn, summary, body, expire)
}

/// `Notify` on a bus connection; the notification's id.
#[cfg(target_os = "linux")]
fn notify_on(
    conn: &dbus::blocking::Connection,
    summary: &str,
    body: &str,
    expire: Duration,
) -> Result<u32, String> {
    use dbus::arg::{PropMap, Variant};
    let proxy = conn.with_proxy(
        "org.freedesktop.Notifications",
        "/org/freedesktop/Notifications",
        Duration::from_secs(2),
    );
    let mut hints = PropMap::new();
    // Critical: shown until the user acts on it or it expires, also in do-not-disturb.
    hints.insert("urgency".into(), Variant(Box::new(2u8)));
    hints.insert(
        "category".into(),
        Variant(Box::new(String::from("call.incoming"))),
    );
    let expire_ms = i32::try_from(expire.as_millis()).unwrap_or(i32::MAX);
    let (id,): (u32,) = proxy
        .method_call(
            "org.freedesktop.Notifications",
            "Notify",
            (
                "Chingu",
                0u32,
                "chingu",
                summary,
                body,
                Vec::<String>::new(),
                hints,
                expire_ms,
            ),
        )
        .map_err(|e| e.to_string())?;
    Ok(id)
}

#[cfg(not(target_os = "linux"))]
pub fn show(_summary: &str, _body: &str, _expire: Duration) -> Result<u32, String> {
    Err("system notifications are not implemented on this platform yet".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_said_in_the_ui_language() {
        assert_eq!(
            ring_text("ko-KR", "민지"),
            ("친구".to_string(), "민지님이 전화를 걸었어요".to_string())
        );
        assert_eq!(ring_text("en", "Sam").1, "Sam is calling you");
        assert_eq!(ring_text("fr", "Sam").0, "Chingu");
    }

    /// Against a private session bus with a stand-in notification service: the service
    /// gets `Notify` with the text and a critical urgency, and its answer comes back.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_notification_goes_out_on_the_session_bus() {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let Some(daemon) = chingu_testkit::webdriver::tool("CHINGU_DBUS_DAEMON", "dbus-daemon")
        else {
            assert!(std::env::var_os("CI").is_none(), "CI installs dbus");
            eprintln!("SKIPPED: no dbus-daemon");
            return;
        };
        let mut bus = chingu_testkit::process::Owned::spawn(
            Command::new(daemon)
                .args(["--session", "--nofork", "--print-address"])
                .stdout(Stdio::piped()),
        )
        .expect("start a session bus");
        let mut address = String::new();
        let mut out = bus.child().stdout.take().expect("stdout");
        let mut byte = [0u8; 1];
        while out.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
            address.push(byte[0] as char);
        }
        // The stand-in service: owns the name, answers Notify with id 7, passes on what
        // it was asked.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let service_address = address.clone();
        std::thread::spawn(move || {
            use dbus::channel::MatchingReceiver;
            let mut channel =
                dbus::channel::Channel::open_private(&service_address).expect("connect");
            channel.register().expect("hello");
            let conn = dbus::blocking::Connection::from(channel);
            conn.request_name("org.freedesktop.Notifications", false, true, false)
                .expect("own the name");
            conn.start_receive(
                dbus::message::MatchRule::new_method_call(),
                Box::new(move |msg, conn| {
                    let _ = tx.send(format!("{:?} {:?}", msg.member(), msg.get_items()));
                    let _ = dbus::channel::Sender::send(conn, msg.method_return().append1(7u32));
                    true
                }),
            );
            for _ in 0..100 {
                let _ = conn.process(Duration::from_millis(50));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let mut channel = dbus::channel::Channel::open_private(&address).expect("connect");
        channel.register().expect("hello");
        let client = dbus::blocking::Connection::from(channel);
        let id = notify_on(
            &client,
            "Chingu",
            "Sam is calling you",
            Duration::from_secs(30),
        );
        assert_eq!(id, Ok(7));
        let seen = rx.recv_timeout(Duration::from_secs(5)).expect("the call");
        assert!(seen.contains("Notify"), "{seen}");
        assert!(seen.contains("Sam is calling you"), "{seen}");
        assert!(seen.contains("urgency"), "{seen}");
        drop(bus);
    }
}
