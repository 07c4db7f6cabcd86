//! The command line, as clap derive structs: this file is the reference
//! for every command and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// clou keeps a small host's servers configured, upgraded and healthy.
#[derive(Debug, Parser)]
#[command(name = "clou", version, about, propagate_version = true)]
pub struct Cli {
    /// More detail on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The lab: a replica of the fleet on this machine, to rehearse changes.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Converges hosts to their roles: every host in parallel, one SSH
    /// connection each.
    Apply(ApplyArgs),
    /// Debian package upgrades in batches, each batch gated by the hosts'
    /// health: shows what it will do and asks first.
    Upgrade(UpgradeArgs),
    /// Disks: replace a failing one.
    #[command(subcommand)]
    Disk(DiskCommand),
    /// Every host's health: disks, arrays, filesystems, services; or
    /// everything about one host.
    Status(StatusArgs),
    /// The usage table (accounts, users and data per service, and a
    /// total), measured now or from the snapshot of a past day.
    Usage(UsageArgs),
    /// Lists hosts and groups, or shows one host's roles and merged vars
    /// with where each value comes from.
    Inventory(InventoryArgs),
    /// Host keys.
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Takes a new server in: checks its host key against the fingerprint
    /// you got from the provider, logs in as root (with your key, or the
    /// provider's password), applies the base role and --roles, then adds
    /// the host to the inventory file (comments kept).
    Onboard(OnboardArgs),
    /// Boots the lab replica of the fleet, converges every role twice (the
    /// second time changes nothing), then shows every host, the fleet's
    /// health and its usage table.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// Change nothing: report what would change.
    #[arg(long)]
    pub check: bool,
    /// Show a unified diff of every file content change (never of secrets).
    #[arg(long)]
    pub diff: bool,
    /// Only these hosts: comma-separated host names, group names or globs
    /// (`mail*`); `!name` excludes.
    #[arg(long, short = 'l')]
    pub limit: Option<String>,
    /// Only these roles (comma-separated), with what they depend on.
    #[arg(long, value_delimiter = ',')]
    pub roles: Option<Vec<String>>,
    /// Only one instance of an application: its vhost, pool, database...
    /// (`NAME`, or `APP/NAME` when several applications have a NAME).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Set a var, above every other level: -e key=value (value read as YAML).
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE")]
    pub extra: Vec<String>,
    /// How many hosts to work on at once.
    #[arg(long, default_value_t = 16)]
    pub forks: usize,
    /// One JSON object per event on stdout, instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Seconds one host may take before clou gives up on it (default 3600).
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    pub timeout: u64,
    /// Seconds a change to sshd or the firewall waits for a new connection
    /// to confirm it before the host puts the previous files back.
    #[arg(long, default_value_t = 30)]
    pub confirm_timeout: u64,
    /// Roll the change out in batches (a number of hosts, or a share:
    /// `25%`), each followed by a health gate; without it, every host at
    /// once.
    #[arg(long)]
    pub serial: Option<crate::rollout::Serial>,
    /// With --serial: failed hosts tolerated before the rollout stops.
    #[arg(long, default_value_t = 0)]
    pub max_fail: usize,
    /// With --serial: seconds between a host's change and its first
    /// health check.
    #[arg(long, default_value_t = 10)]
    pub settle: u64,
    /// With --serial: seconds a host may take to be healthy again.
    #[arg(long, default_value_t = 60)]
    pub gate_timeout: u64,
    /// When a tenant's application upgrade fails (and is rolled back), go
    /// on with the host's other tenants instead of stopping there.
    #[arg(long)]
    pub keep_going: bool,
    /// Apply to the lab replica of the inventory instead of the real hosts.
    #[arg(long = "in-lab")]
    pub in_lab: bool,
}

#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Replaces a disk of a btrfs RAID1 (while mounted) or of mdadm arrays
    /// (out of its arrays, swapped, partitioned like its twin, back in,
    /// boot loader) with a new blank one: shows the disk and the commands,
    /// asks, follows the copy with a progress bar, verifies. Run it again
    /// to follow a replacement that was interrupted.
    Replace(DiskReplaceArgs),
}

#[derive(Debug, Args)]
pub struct DiskReplaceArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// The inventory host.
    pub host: String,
    /// The disk to take out (`/dev/sdb`).
    pub disk: String,
    /// The new disk, blank and at least as large (`/dev/sdc`). mdadm: by
    /// default the disk put in the old one's place, under its name.
    #[arg(long)]
    pub new: Option<String>,
    /// Do not ask: the plan shown is approved.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Work on the lab replica of the host.
    #[arg(long = "in-lab")]
    pub in_lab: bool,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// Only these hosts (as apply's --limit).
    #[arg(long, short = 'l')]
    pub limit: Option<String>,
    /// Only these packages, where installed (comma-separated; default:
    /// everything upgradable).
    #[arg(long, value_delimiter = ',')]
    pub packages: Option<Vec<String>>,
    /// Hosts per batch: a number, or a share of the hosts (`25%`).
    #[arg(long, default_value = "1")]
    pub serial: crate::rollout::Serial,
    /// Failed hosts tolerated before the rollout stops.
    #[arg(long, default_value_t = 0)]
    pub max_fail: usize,
    /// Reboot the hosts that need it after their upgrade, and wait for them.
    #[arg(long)]
    pub reboot: bool,
    /// Do not ask: the plan shown is approved.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Only look: show what would be upgraded, change nothing (not even
    /// the package lists).
    #[arg(long)]
    pub check: bool,
    /// Seconds between a host's upgrade and its first health check.
    #[arg(long, default_value_t = 10)]
    pub settle: u64,
    /// Seconds a host may take to be healthy after its upgrade.
    #[arg(long, default_value_t = 60)]
    pub gate_timeout: u64,
    /// Seconds a rebooted host may take to come back.
    #[arg(long, default_value_t = 600)]
    pub reboot_timeout: u64,
    /// Upgrade the lab replica of the inventory instead of the real hosts.
    #[arg(long = "in-lab")]
    pub in_lab: bool,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// The table of that day (YYYY-MM-DD), from its snapshot: the one
    /// beside the inventory, or else the hosts' own.
    #[arg(long)]
    pub at: Option<String>,
    /// Only these hosts (as apply's --limit).
    #[arg(long, short = 'l')]
    pub limit: Option<String>,
    /// The table as one JSON object.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// The table as CSV (data in GB), for a spreadsheet.
    #[arg(long)]
    pub csv: bool,
    /// Measure the lab replica of the inventory instead of the real hosts.
    #[arg(long = "in-lab")]
    pub in_lab: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// Everything about this host, each disk's identity and figures included.
    pub host: Option<String>,
    /// Only these hosts (as apply's --limit).
    #[arg(long, short = 'l')]
    pub limit: Option<String>,
    /// Set a var for this check, as apply -e does (e.g. `-e 'health={smartctl: /path}'`).
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE")]
    pub extra: Vec<String>,
    /// One JSON object per host on stdout.
    #[arg(long)]
    pub json: bool,
    /// Look at the lab replica of the inventory instead of the real hosts.
    #[arg(long = "in-lab")]
    pub in_lab: bool,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// Show this host's roles and vars.
    pub host: Option<String>,
    /// Set a var as `apply -e` would, to see its effect.
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE")]
    pub extra: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Shows a host's key fingerprint, or records the key as trusted once
    /// you checked it (on the console: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).
    Trust(TrustArgs),
}

#[derive(Debug, Args)]
pub struct OnboardArgs {
    /// The inventory file the host is added to.
    #[arg(
        long,
        short = 'i',
        env = "CLOU_INVENTORY",
        default_value = "inventory/girofle.yaml"
    )]
    pub inventory: PathBuf,
    /// The host's inventory name (lowercase letters, digits, '-').
    pub name: String,
    /// Its IP address or DNS name.
    #[arg(long)]
    pub address: String,
    /// The host key's fingerprint (SHA256:...) from the provider's mail or
    /// the console. Without it, the key is shown and you are asked.
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Roles for the host besides what its groups give (base always).
    #[arg(long, value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Inventory groups to put the host in.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Read root's password from the first line of stdin (when no key of
    /// yours is accepted yet), instead of asking on the terminal.
    #[arg(long)]
    pub password_stdin: bool,
    /// Do not ask before changing the host (the host key is never taken
    /// unasked: pass --fingerprint).
    #[arg(long)]
    pub yes: bool,
    /// Seconds the sshd, firewall and root key changes wait for clou to
    /// log in again with a key before the host puts them back.
    #[arg(long, default_value_t = 30)]
    pub confirm_timeout: u64,
}

#[derive(Debug, Args)]
pub struct TrustArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// The inventory host.
    pub host: String,
    /// The fingerprint you checked (SHA256:...); the key is only recorded
    /// when the host offers exactly this one. Without it, the host's
    /// fingerprint is shown and nothing is recorded.
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Trust the key of the lab replica of the host.
    #[arg(long = "in-lab")]
    pub in_lab: bool,
}

/// Which inventory, and so which lab.
#[derive(Debug, Clone, Args)]
pub struct LabSelect {
    /// The inventory whose hosts the lab replicates.
    #[arg(
        long,
        short = 'i',
        env = "CLOU_INVENTORY",
        default_value = "inventory/girofle.yaml"
    )]
    pub inventory: PathBuf,
    /// Lab name (default: the inventory file's name, e.g. girofle).
    #[arg(long)]
    pub lab: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Boots one Debian host per inventory host and waits until each answers SSH.
    Up(LabUpArgs),
    /// Stops what `up` started and removes its mounts, links and bridge.
    Down(LabDownArgs),
    /// Lists the lab's hosts: release, address, up or down.
    Status(LabStatusArgs),
    /// Opens a root shell on a lab host, or runs a command there.
    Ssh(LabSshArgs),
}

#[derive(Debug, Args)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// Boot every host with this Debian release (bullseye, bookworm, trixie).
    #[arg(long)]
    pub release: Option<String>,
    /// Lab subnet, a private /24 (default: the inventory's, else 10.99.0.0/24).
    #[arg(long)]
    pub subnet: Option<String>,
    /// Throw away the hosts' previous state first.
    #[arg(long)]
    pub fresh: bool,
    /// Seconds to wait for every host to answer SSH.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct LabDownArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// Also delete the hosts' filesystems and disks.
    #[arg(long)]
    pub purge: bool,
}

#[derive(Debug, Args)]
pub struct LabStatusArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// One JSON object per host on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LabSshArgs {
    #[command(flatten)]
    pub select: LabSelect,
    /// The lab host.
    pub host: String,
    /// Command to run (default: an interactive shell).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub select: LabSelect,
}
