//! `clou disk replace` on the lab: bravo's btrfs RAID1 on loop-backed
//! disks, one disk replaced for real with data written before and its
//! hashes checked after (on a fresh mount, from the disks), and the refusal
//! of a disk whose data has no copy elsewhere. Checked over ssh with btrfs
//! and sha256sum, not through clou's report.

use libtest_mimic::Failed;

use crate::lab;

pub const TESTS: &[(&str, crate::Test)] = &[
    (
        "disk::a_raid1_disk_is_replaced_and_every_byte_kept",
        a_raid1_disk_is_replaced_and_every_byte_kept,
    ),
    (
        "disk::a_disk_without_a_copy_elsewhere_is_refused",
        a_disk_without_a_copy_elsewhere_is_refused,
    ),
];

fn replace(args: &[&str]) -> Result<(Option<i32>, String), Failed> {
    let lab = lab()?;
    let mut full = vec!["disk", "replace"];
    full.extend_from_slice(args);
    let out = lab.clou(&full);
    Ok((
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

fn a_raid1_disk_is_replaced_and_every_byte_kept() -> Result<(), Failed> {
    let lab = lab()?;
    lab.ssh_ok(
        "bravo",
        "DEBIAN_FRONTEND=noninteractive apt-get -q -y install btrfs-progs >/dev/null",
    );
    lab.ssh_ok(
        "bravo",
        "set -e; wipefs -q -a /dev/vdb /dev/vdc /dev/vdd; \
         mkfs.btrfs -q -f -d raid1 -m raid1 /dev/vdb /dev/vdc >/dev/null; \
         mkdir -p /mnt/r1; mount /dev/vdb /mnt/r1; \
         dd if=/dev/urandom of=/mnt/r1/big bs=1M count=200 status=none; \
         mkdir /mnt/r1/docs; for i in 1 2 3 4 5; do head -c 100000 /dev/urandom > /mnt/r1/docs/$i; done; \
         sync; cd /mnt/r1 && find . -type f | sort | xargs sha256sum > /root/r1.sha256",
    );

    let (code, said) = replace(&[
        "--in-lab", "bravo", "/dev/vdc", "--new", "/dev/vdd", "--yes",
    ])?;
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("every block has a copy on another device"),
        "{said}"
    );
    assert!(
        said.contains("btrfs replace start /dev/vdc /dev/vdd /mnt/r1"),
        "{said}"
    );
    assert!(said.contains("/dev/vdc can now be taken out"), "{said}");

    // Checked by btrfs and sha256sum on the host, after a fresh mount.
    let show = lab.ssh_ok("bravo", "btrfs filesystem show /mnt/r1");
    assert!(
        show.contains("/dev/vdd") && show.contains("/dev/vdb"),
        "{show}"
    );
    assert!(!show.contains("/dev/vdc"), "{show}");
    lab.ssh_ok(
        "bravo",
        "set -e; umount /mnt/r1; btrfs device scan >/dev/null; mount /dev/vdb /mnt/r1; \
         cd /mnt/r1 && sha256sum --quiet -c /root/r1.sha256",
    );
    let stats = lab.ssh_ok("bravo", "btrfs device stats /mnt/r1");
    assert!(stats.lines().all(|l| l.ends_with(" 0")), "{stats}");
    assert!(stats.contains("/dev/vdd"), "{stats}");
    // The old disk carries nothing any more: it can be pulled.
    lab.ssh_ok("bravo", "! blkid -p /dev/vdc >/dev/null");
    let journal = lab.ssh_ok("bravo", "tail -n 5 /var/lib/clou/journal.jsonl");
    assert!(journal.contains("disk replace: finished"), "{journal}");
    lab.ssh_ok("bravo", "test ! -e /var/lib/clou/disk-replace.json");
    Ok(())
}

fn a_disk_without_a_copy_elsewhere_is_refused() -> Result<(), Failed> {
    let lab = lab()?;
    lab.ssh_ok(
        "bravo",
        "set -e; umount /mnt/r1 2>/dev/null || true; wipefs -q -a /dev/vdb /dev/vdc /dev/vdd; \
         mkfs.btrfs -q -f /dev/vdc >/dev/null; mkdir -p /mnt/s; mount /dev/vdc /mnt/s; \
         echo precious > /mnt/s/file; sync",
    );
    let (code, said) = replace(&[
        "--in-lab", "bravo", "/dev/vdc", "--new", "/dev/vdd", "--yes",
    ])?;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("would lose data"), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    // Nothing was: the filesystem is still on /dev/vdc, /dev/vdd blank.
    let show = lab.ssh_ok("bravo", "btrfs filesystem show /mnt/s");
    assert!(show.contains("/dev/vdc"), "{show}");
    lab.ssh_ok("bravo", "! blkid -p /dev/vdd >/dev/null");
    assert_eq!(lab.ssh_ok("bravo", "cat /mnt/s/file"), "precious\n");
    lab.ssh_ok("bravo", "umount /mnt/s && wipefs -q -a /dev/vdc");
    Ok(())
}
