//! `kith app`: the desktop app (feature `gui`).

use std::path::PathBuf;

#[cfg(feature = "gui")]
use anyhow::Context;
use anyhow::{Result, bail};
#[cfg(feature = "gui")]
use kith::daemon::{DaemonConfig, PeerAddr};
#[cfg(feature = "gui")]
use kith::discovery::InterfaceSpec;

use super::args::AppArgs;

#[cfg(feature = "gui")]
pub(super) fn run_app(data_dir: PathBuf, args: AppArgs, passphrase: Option<String>) -> Result<()> {
    let peers = args
        .peers
        .iter()
        .map(|peer| peer.parse::<PeerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    // None given: the app uses the choice saved at first run (or in its
    // Settings), else the default route's interface.
    let interfaces = args
        .interfaces
        .iter()
        .map(|iface| iface.parse::<InterfaceSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = DaemonConfig {
        peers,
        // So that `kith send/listen/peers` work against the running app.
        control_socket: true,
        ..DaemonConfig::default()
    };
    if let Some(listen) = args.listen {
        config.net.unicast_bind = listen;
    }
    config.discovery.interfaces = interfaces;
    config.discovery.mdns = !args.no_mdns;
    // These win over what the app's Settings saved.
    if let (Some(addr), Some(key)) = (&args.registry, &args.registry_key) {
        config.discovery.registry = Some(
            kith::ui::backend::resolve_registry(addr, key, config.net.unicast_bind.is_ipv4())
                .map_err(|e| anyhow::anyhow!("--registry: {e}"))?,
        );
    }
    if let Some(secs) = args.keepalive_secs {
        if secs == 0 {
            bail!("--keepalive-secs must be at least 1");
        }
        let presence = &mut config.discovery.presence;
        presence.keepalive_interval = std::time::Duration::from_secs(secs);
        presence.max_keepalive_interval = presence
            .max_keepalive_interval
            .max(presence.keepalive_interval);
    }
    config.net.multicast_interfaces = args.multicast_interfaces.clone();
    let given = kith::ui::Given {
        registry: args.registry.is_some(),
        keepalive: args.keepalive_secs.is_some(),
        room_multicast: !args.multicast_interfaces.is_empty(),
    };
    let renderer = match std::env::var("KITH_RENDERER").as_deref() {
        Err(_) | Ok("" | "wgpu") => kith::ui::Renderer::Wgpu,
        Ok("glow") => kith::ui::Renderer::Glow,
        Ok(other) => bail!("KITH_RENDERER is wgpu or glow, not {other:?}"),
    };
    match kith::ui::run(data_dir, config, given, passphrase, renderer) {
        Ok(()) => Ok(()),
        // wgpu found no adapter (no Vulkan driver): start again with glow.
        // A new process, because a window system connection cannot be
        // opened twice in one; nothing was unlocked yet, the window never
        // showed.
        Err(error)
            if kith::ui::renderer_failed(&error) && std::env::var_os("KITH_RENDERER").is_none() =>
        {
            eprintln!("kith: wgpu could not start ({error}); trying OpenGL (KITH_RENDERER=glow)");
            let exe = std::env::current_exe().context("cannot find this program to restart it")?;
            let status = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("KITH_RENDERER", "glow")
                .status()
                .context("cannot restart with the glow renderer")?;
            if status.success() {
                Ok(())
            } else {
                bail!("the desktop app failed with wgpu ({error}) and with glow ({status})")
            }
        }
        Err(error) => Err(anyhow::anyhow!("the desktop app failed: {error}")),
    }
}

#[cfg(not(feature = "gui"))]
pub(super) fn run_app(
    _data_dir: PathBuf,
    _args: AppArgs,
    _passphrase: Option<String>,
) -> Result<()> {
    bail!("this kith was built without the desktop app (--no-default-features); see `kith --help`")
}
