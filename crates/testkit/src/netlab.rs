//! A network lab of Linux network namespaces: a bridge in one namespace plays "the
//! internet" (203.0.113.0/24, a documentation range), the services sit on it at
//! [`Lab::SERVICES`], and each [`Site`] is a peer's own namespace, either directly on the
//! internet or behind a NAT router namespace of its own. All traffic stays between the
//! lab's namespaces; dropping the [`Lab`] deletes them (and with them every interface).
//!
//! The routers behave as home routers do: they masquerade (port-preserving, or with a
//! random port per flow for a symmetric NAT), and drop unsolicited inbound packets — in
//! `INPUT` as well as `FORWARD`, because conntrack would otherwise confirm an entry for
//! an unsolicited packet addressed to the router itself and the outbound packet of the
//! hole punch that follows would be mapped to another port.
//!
//! Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` and `iptables`; [`Lab::new`]
//! says what is missing so that tests can skip with that message.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How a site reaches the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// A public address on the internet itself, no NAT, no firewall.
    Public,
    /// Behind a port-preserving NAT (endpoint-independent mapping, like most home routers).
    Cone,
    /// Behind a NAT that maps every flow to a random port (a symmetric NAT, like many
    /// carrier-grade NATs).
    Symmetric,
    /// Behind a NAT whose firewall drops all UDP (many offices): only TCP gets out.
    UdpBlocked,
}

impl Access {
    pub const ALL: [Access; 4] = [
        Access::Public,
        Access::Cone,
        Access::Symmetric,
        Access::UdpBlocked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Cone => "cone-nat",
            Access::Symmetric => "symmetric-nat",
            Access::UdpBlocked => "udp-blocked",
        }
    }
}

/// One peer's place in the lab.
#[derive(Debug, Clone)]
pub struct Site {
    pub access: Access,
    /// The namespace the peer runs in.
    pub namespace: String,
    /// The peer's own address (private behind a NAT).
    pub address: Ipv4Addr,
    /// Its address on the internet (the router's, behind a NAT).
    pub public_address: Ipv4Addr,
    /// The router's namespace (`None` for a public site).
    pub router: Option<String>,
    /// The peer's interface (in `namespace`).
    pub interface: String,
    /// The prefix length of `address`.
    prefix: u8,
    gateway: Option<Ipv4Addr>,
}

/// The lab. Namespaces are named `chl<pid>x<n>-…`, unique per process and lab.
#[derive(Debug)]
pub struct Lab {
    tag: String,
    internet: String,
    namespaces: Vec<String>,
    sites: u8,
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// The services' address on the internet (chingu-server, coturn).
    pub const SERVICES: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

    /// Builds the internet namespace and its bridge. Fails, saying why, where namespaces
    /// cannot be made (not root, no `ip`, a container without the capability).
    pub fn new() -> anyhow::Result<Self> {
        for tool in ["ip", "iptables"] {
            if !program_exists(tool) {
                bail!("`{tool}` is not installed");
            }
        }
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}x{n}", std::process::id() % 1_000_000);
        let mut lab = Self {
            internet: format!("chl{tag}-net"),
            tag,
            namespaces: Vec::new(),
            sites: 0,
        };
        let net = lab.internet.clone();
        lab.add_namespace(&net)
            .context("network namespaces are refused here")?;
        lab.ip(&net, "link add br0 type bridge")?;
        lab.ip(&net, "link set br0 up")?;
        lab.ip(&net, &format!("addr add {}/24 dev br0", Self::SERVICES))?;
        Ok(lab)
    }

    /// The namespace that is the internet (where the services run).
    pub fn internet(&self) -> &str {
        &self.internet
    }

    /// Adds a peer's site.
    pub fn site(&mut self, access: Access) -> anyhow::Result<Site> {
        self.sites += 1;
        let n = self.sites;
        anyhow::ensure!(n < 100, "at most 99 sites in a lab");
        let public_address = Ipv4Addr::new(203, 0, 113, 10 + n);
        let peer_ns = format!("chl{}-p{n}", self.tag);
        self.add_namespace(&peer_ns)?;
        // Interface names are at most 15 bytes and share one kernel namespace with every
        // other lab's until moved: tag + site + role keeps them unique.
        let tag = self.tag.clone();
        let veth = |role: &str| format!("v{tag}{n}{role}");
        if access == Access::Public {
            let (outside, inside) = (veth("o"), veth("i"));
            self.veth(&self.internet.clone(), &outside, &peer_ns, &inside)?;
            self.ip(
                &self.internet.clone(),
                &format!("link set {outside} master br0"),
            )?;
            self.ip(
                &peer_ns,
                &format!("addr add {public_address}/24 dev {inside}"),
            )?;
            return Ok(Site {
                access,
                namespace: peer_ns,
                address: public_address,
                public_address,
                router: None,
                interface: inside,
                prefix: 24,
                gateway: None,
            });
        }
        let router = format!("chl{}-r{n}", self.tag);
        self.add_namespace(&router)?;
        let (wan_outside, wan) = (veth("o"), veth("w"));
        self.veth(&self.internet.clone(), &wan_outside, &router, &wan)?;
        self.ip(
            &self.internet.clone(),
            &format!("link set {wan_outside} master br0"),
        )?;
        self.ip(&router, &format!("addr add {public_address}/24 dev {wan}"))?;
        let (lan, inside) = (veth("l"), veth("i"));
        self.veth(&router, &lan, &peer_ns, &inside)?;
        let gateway = Ipv4Addr::new(192, 168, n, 1);
        let address = Ipv4Addr::new(192, 168, n, 2);
        self.ip(&router, &format!("addr add {gateway}/24 dev {lan}"))?;
        self.ip(&peer_ns, &format!("addr add {address}/24 dev {inside}"))?;
        self.ip(&peer_ns, &format!("route add default via {gateway}"))?;
        self.sh(&router, "sysctl -qw net.ipv4.ip_forward=1")?;
        let random = if access == Access::Symmetric {
            " --random"
        } else {
            ""
        };
        let mut rules = vec![
            format!("-t nat -A POSTROUTING -o {wan} -j MASQUERADE{random}"),
            format!("-A INPUT -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"),
            format!("-A INPUT -i {wan} -j DROP"),
            format!("-A FORWARD -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"),
            format!("-A FORWARD -i {wan} -j DROP"),
        ];
        if access == Access::UdpBlocked {
            rules.insert(0, "-I FORWARD 1 -p udp -j DROP".into());
        }
        for rule in rules {
            self.sh(&router, &format!("iptables {rule}"))?;
        }
        Ok(Site {
            access,
            namespace: peer_ns,
            address,
            public_address,
            router: Some(router),
            interface: inside,
            prefix: 24,
            gateway: Some(gateway),
        })
    }

    /// `program` to be run in `namespace` (through `ip netns exec`).
    pub fn command(&self, namespace: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", namespace]).arg(program);
        cmd
    }

    /// Waits until a TCP listener accepts at `addr` inside `namespace`.
    pub fn wait_for_tcp(
        &self,
        namespace: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = in_namespace(namespace, move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })?;
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nothing listens at {addr} in {namespace} after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Cuts a site off the network (`true`) or restores it: every packet in and out of
    /// the peer is dropped, as when Wi-Fi goes away; its address stays.
    pub fn set_outage(&self, site: &Site, out: bool) -> anyhow::Result<()> {
        let op = if out { "-I" } else { "-D" };
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            self.sh(
                &site.namespace,
                &format!("iptables {op} {chain} {dir} {} -j DROP", site.interface),
            )?;
        }
        Ok(())
    }

    /// Moves the peer to a new address on its network (as after a DHCP change or a hop
    /// to another access point): the old address goes away. Returns the new address.
    pub fn change_address(&self, site: &mut Site) -> anyhow::Result<Ipv4Addr> {
        let [a, b, c, d] = site.address.octets();
        let new = Ipv4Addr::new(a, b, c, if d >= 200 { 100 } else { d + 100 });
        // Old away, then new (deleting a primary address would take a secondary in the
        // same subnet with it).
        self.ip(
            &site.namespace,
            &format!(
                "addr del {}/{} dev {}",
                site.address, site.prefix, site.interface
            ),
        )?;
        self.ip(
            &site.namespace,
            &format!("addr add {new}/{} dev {}", site.prefix, site.interface),
        )?;
        if let Some(gateway) = site.gateway {
            self.ip(
                &site.namespace,
                &format!("route replace default via {gateway}"),
            )?;
        }
        if site.access == Access::Public {
            site.public_address = new;
        }
        site.address = new;
        Ok(new)
    }

    fn add_namespace(&mut self, name: &str) -> anyhow::Result<()> {
        run("ip", &["netns", "add", name])?;
        self.namespaces.push(name.to_owned());
        self.ip(name, "link set lo up")
    }

    fn veth(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) -> anyhow::Result<()> {
        self.ip(
            ns_a,
            &format!("link add {a} type veth peer name {b} netns {ns_b}"),
        )?;
        self.ip(ns_a, &format!("link set {a} up"))?;
        self.ip(ns_b, &format!("link set {b} up"))
    }

    fn ip(&self, namespace: &str, args: &str) -> anyhow::Result<()> {
        let mut all = vec!["-n", namespace];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }

    fn sh(&self, namespace: &str, command: &str) -> anyhow::Result<()> {
        let mut all = vec!["netns", "exec", namespace];
        all.extend(command.split_whitespace());
        run("ip", &all)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `f` on a thread that has entered the namespace (the calling thread is untouched).
pub fn in_namespace<T: Send + 'static>(
    namespace: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let path = format!("/var/run/netns/{namespace}");
    let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        #[allow(unsafe_code)]
        // SAFETY: setns on a valid namespace fd only changes this thread's namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(anyhow::anyhow!(
                "setns: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
}

fn program_exists(name: &str) -> bool {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(name).is_file())
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one UDP datagram from `from` to `to` and says whether it arrived.
    fn udp_reaches(lab: &Lab, from: &str, to_ns: &str, to: SocketAddr) -> bool {
        let receiver = in_namespace(to_ns, move || {
            let socket = std::net::UdpSocket::bind(to).expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            socket
        })
        .expect("receiver");
        let _ = lab;
        in_namespace(from, move || {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
            socket.send_to(b"x", to).ok()
        })
        .expect("sender");
        let mut buf = [0u8; 8];
        receiver.recv_from(&mut buf).is_ok()
    }

    #[test]
    fn nat_sites_reach_the_internet_and_unsolicited_packets_do_not_reach_them() {
        let mut lab = match Lab::new() {
            Ok(lab) => lab,
            Err(e) => {
                eprintln!("SKIPPED: the network lab needs namespaces: {e:#}");
                return;
            }
        };
        let public = lab.site(Access::Public).unwrap();
        let cone = lab.site(Access::Cone).unwrap();
        let blocked = lab.site(Access::UdpBlocked).unwrap();
        let server = SocketAddr::from((Lab::SERVICES, 40_001));
        assert!(udp_reaches(&lab, &cone.namespace, lab.internet(), server));
        assert!(udp_reaches(&lab, &public.namespace, lab.internet(), server));
        assert!(
            !udp_reaches(&lab, &blocked.namespace, lab.internet(), server),
            "the firewall drops UDP"
        );
        // Nothing from outside reaches the peer behind the NAT unasked.
        let inside = SocketAddr::from((cone.address, 40_002));
        assert!(!udp_reaches(&lab, lab.internet(), &cone.namespace, inside));
    }
}
