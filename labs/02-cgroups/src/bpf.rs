//! The cgroup v2 device controller: a small BPF program per container.
//!
//! cgroup v1 keeps the device allow-list in two files, `devices.allow` and
//! `devices.deny`. cgroup v2 has no such files. Instead, the kernel runs a
//! BPF program attached to the cgroup every time a process in it opens a
//! device node or creates one with `mknod`, and the program's answer
//! decides: 1 allows the access, 0 refuses it with EPERM. runc and youki
//! both write that program themselves, one instruction at a time, from the
//! container's rules; so does this module.
//!
//! The program receives one argument in register r1, a pointer to this
//! structure (the kernel's `struct bpf_cgroup_dev_ctx`):
//!
//! ```c
//! struct bpf_cgroup_dev_ctx {
//!     u32 access_type; // (access << 16) | dev_type
//!     u32 major;
//!     u32 minor;
//! };
//! ```
//!
//! The low 16 bits of `access_type` say what kind of device this is
//! (`BPF_DEVCG_DEV_BLOCK` = 1, `BPF_DEVCG_DEV_CHAR` = 2); the high 16 bits
//! say what the process wants to do with it, as a set of bits
//! (`BPF_DEVCG_ACC_MKNOD` = 1, `BPF_DEVCG_ACC_READ` = 2,
//! `BPF_DEVCG_ACC_WRITE` = 4). An `open(O_RDWR)` asks for read and write at
//! once.
//!
//! [`program`] turns the rules into instructions, and is plain logic that
//! the tests run through a small interpreter without root. [`attach`] hands
//! the instructions to the kernel with the `bpf(2)` system call: first
//! `BPF_PROG_LOAD`, where the kernel's verifier proves the program safe
//! (it always ends, reads only its context, returns a value), then
//! `BPF_PROG_ATTACH`, which hooks it to the cgroup directory.
//!
//! To look at a program on a live system:
//! `bpftool cgroup list /sys/fs/cgroup/<cgroup>` lists the attached programs,
//! and `bpftool prog dump xlated id <id>` prints their instructions.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;

use crate::devices::{DeviceKind, DeviceRule};
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------
// Instruction encoding. libc only defines the classic BPF constants (the
// older socket-filter language), so the eBPF ones are written out here,
// with the values from the kernel's <linux/bpf.h> and <linux/bpf_common.h>.
// An opcode is three fields or'ed together: the instruction class (low 3
// bits), then an operation and a "source" or size/mode.
// ---------------------------------------------------------------------------

/// Class: load into a register from memory (`dst = *(src + off)`).
const BPF_LDX: u8 = 0x01;
/// Class: arithmetic on whole 64-bit registers.
const BPF_ALU64: u8 = 0x07;
/// Class: jumps that compare whole 64-bit registers (also `ja`, `exit`).
const BPF_JMP: u8 = 0x05;
/// Class: jumps that compare only the low 32 bits of a register.
const BPF_JMP32: u8 = 0x06;

/// Size and mode of a load: a 32-bit word, read from memory.
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;

/// The second operand is the instruction's `imm` field (a constant).
const BPF_K: u8 = 0x00;

/// Arithmetic operations.
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;

/// Jump operations. `ja` is unconditional; `jset` jumps when
/// `dst & imm != 0`.
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JSET: u8 = 0x40;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

// The program's input, `struct bpf_cgroup_dev_ctx` (<linux/bpf.h>).

/// Offsets of the three fields in the context.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

/// Device types, in the low 16 bits of `access_type`.
const BPF_DEVCG_DEV_BLOCK: u32 = 1;
const BPF_DEVCG_DEV_CHAR: u32 = 2;

/// Access bits, in the high 16 bits of `access_type`.
const BPF_DEVCG_ACC_MKNOD: u32 = 1;
const BPF_DEVCG_ACC_READ: u32 = 2;
const BPF_DEVCG_ACC_WRITE: u32 = 4;

// The bpf(2) system call (<linux/bpf.h>).

/// Commands: `enum bpf_cmd`.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
/// `enum bpf_prog_type`: a program that decides device access.
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `enum bpf_attach_type`: where in a cgroup it hooks in.
const BPF_CGROUP_DEVICE: u32 = 6;
/// Attach flag: programs attached to a parent cgroup and to its children
/// all run, and every one of them must allow the access.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// The license the program declares. The kernel only looks at it to decide
/// whether the program may call GPL-only helper functions; this one calls
/// none.
const LICENSE: &std::ffi::CStr = c"Apache-2.0";

/// The name `bpftool` shows for the program (at most 15 bytes).
const PROG_NAME: &[u8] = b"berth_devices";

/// Size of the buffer for the verifier's explanation when loading fails.
const LOG_SIZE: usize = 64 * 1024;

// Registers. The program gets its context pointer in r1 and returns its
// verdict in r0; r2 to r5 hold the four facts about the request for the
// whole program.

/// The return value: 1 allows, 0 denies.
const R0: u8 = 0;
/// The context pointer, as the kernel passes it.
const R_CTX: u8 = 1;
/// The device type (1 block, 2 char).
const R_TYPE: u8 = 2;
/// The access bits requested and not yet decided by a rule.
const R_ACCESS: u8 = 3;
/// The device's major and minor numbers.
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`:
/// an 8-bit opcode, two 4-bit register numbers packed in one byte
/// (`dst_reg` in the low half, `src_reg` in the high half), a 16-bit
/// offset (for memory accesses, and for jumps: how many instructions to
/// skip), and a 32-bit constant.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// The kernel reads the instructions as an array of 8-byte records.
const _: () = assert!(size_of::<Insn>() == 8);

impl Insn {
    /// The destination register (the one that is written or compared).
    pub fn dst(self) -> u8 {
        self.regs & 0x0f
    }

    /// The source register (the one that is read, here only by loads).
    pub fn src(self) -> u8 {
        self.regs >> 4
    }

    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        }
    }

    /// `dst = *(u32 *)(src + off)`
    fn load_u32(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
    }

    /// `dst = imm`
    fn mov(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }

    /// `dst &= imm` (the constant is sign-extended to 64 bits).
    fn and(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | BPF_AND | BPF_K, dst, 0, 0, imm)
    }

    /// `dst >>= imm`
    fn rsh(dst: u8, imm: i32) -> Insn {
        Insn::new(BPF_ALU64 | BPF_RSH | BPF_K, dst, 0, 0, imm)
    }

    /// `exit`: the program ends and returns r0.
    fn exit() -> Insn {
        Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
}

/// Where a jump goes, before the instructions' final positions are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The first instruction after the current rule: this rule does not match.
    NextRule,
    /// The shared "return 1" at the end.
    Allow,
    /// The shared "return 0" at the end.
    Deny,
    /// An instruction index in the finished program.
    At(usize),
}

/// An instruction whose jump offset is filled in once the layout is known.
type Pending = (Insn, Option<Target>);

/// A conditional jump comparing the low 32 bits of `dst` with `imm`
/// (the context's fields are 32-bit numbers).
fn jump32(op: u8, dst: u8, imm: u32, to: Target) -> Pending {
    let insn = Insn::new(BPF_JMP32 | op | BPF_K, dst, 0, 0, imm.cast_signed());
    (insn, Some(to))
}

/// The access bits a rule's letters stand for (letters other than
/// `r`, `w` and `m` mean nothing, as in [`crate::devices::allowed`]).
fn access_bits(access: &str) -> u32 {
    let mut bits = 0;
    for (letter, bit) in [
        ('r', BPF_DEVCG_ACC_READ),
        ('w', BPF_DEVCG_ACC_WRITE),
        ('m', BPF_DEVCG_ACC_MKNOD),
    ] {
        if access.contains(letter) {
            bits |= bit;
        }
    }
    bits
}

/// The instructions for one rule, or `None` for a rule that can never
/// match (a `c` or `b` rule with no access letters).
///
/// The rule first checks whether it is about this device: each check that
/// fails jumps to the next rule. Then it decides the access bits it covers:
/// an allow rule removes them from r3 and allows when nothing is left to
/// decide; a deny rule denies if any of them is still undecided. An `a`
/// rule covers every access, so it decides at once.
fn rule_block(rule: &DeviceRule) -> Option<Vec<Pending>> {
    let mut block = Vec::new();
    match rule.kind {
        DeviceKind::All => {}
        DeviceKind::Char => block.push(jump32(
            BPF_JNE,
            R_TYPE,
            BPF_DEVCG_DEV_CHAR,
            Target::NextRule,
        )),
        DeviceKind::Block => block.push(jump32(
            BPF_JNE,
            R_TYPE,
            BPF_DEVCG_DEV_BLOCK,
            Target::NextRule,
        )),
    }
    if let Some(major) = rule.major {
        block.push(jump32(BPF_JNE, R_MAJOR, major, Target::NextRule));
    }
    if let Some(minor) = rule.minor {
        block.push(jump32(BPF_JNE, R_MINOR, minor, Target::NextRule));
    }
    let verdict = if rule.allow {
        Target::Allow
    } else {
        Target::Deny
    };
    if rule.kind == DeviceKind::All {
        block.push((Insn::new(BPF_JMP | BPF_JA, 0, 0, 0, 0), Some(verdict)));
        return Some(block);
    }
    let bits = access_bits(&rule.access);
    if bits == 0 {
        return None;
    }
    if rule.allow {
        // r3 &= ~bits; if r3 == 0, everything asked for is allowed.
        block.push((Insn::and(R_ACCESS, (!bits).cast_signed()), None));
        block.push(jump32(BPF_JEQ, R_ACCESS, 0, Target::Allow));
    } else {
        // If any undecided bit is one this rule denies, deny.
        block.push(jump32(BPF_JSET, R_ACCESS, bits, Target::Deny));
    }
    Some(block)
}

// ANCHOR: program
/// Translates the rules into a BPF_PROG_TYPE_CGROUP_DEVICE program.
///
/// The rules are read like [`crate::devices::allowed`] reads them: the last
/// rule that matches decides, and a request no rule matches is denied. The
/// program reaches the same answer by looking at the rules backwards, from
/// the last one: the first rule it finds that matches decides, and falling
/// off the end of the list returns 0.
///
/// One request can ask for several accesses at once (an `open` with
/// `O_RDWR` asks for read and write). The program allows it only if each
/// access on its own would be allowed: register r3 starts with all the
/// requested bits, a matching allow rule clears the bits it covers, a
/// matching deny rule refuses if one of its bits is still set, and the
/// program allows as soon as r3 is empty.
///
/// The kernel's verifier refuses a program with instructions that can never
/// run, so a rule that matches every device (such as `a`) ends the program:
/// the rules before it in the list are left out, since they could never
/// decide anything.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut code: Vec<Pending> = vec![
        // r2 = device type, r3 = access bits, r4 = major, r5 = minor.
        (Insn::load_u32(R_TYPE, R_CTX, CTX_ACCESS_TYPE), None),
        (Insn::and(R_TYPE, 0xffff), None),
        (Insn::load_u32(R_ACCESS, R_CTX, CTX_ACCESS_TYPE), None),
        (Insn::rsh(R_ACCESS, 16), None),
        (Insn::load_u32(R_MAJOR, R_CTX, CTX_MAJOR), None),
        (Insn::load_u32(R_MINOR, R_CTX, CTX_MINOR), None),
    ];
    let mut falls_through = true;
    for rule in rules.iter().rev() {
        let Some(block) = rule_block(rule) else {
            continue;
        };
        let next_rule = code.len() + block.len();
        let conditional = block.iter().any(|(_, to)| *to == Some(Target::NextRule));
        code.extend(block.into_iter().map(|(insn, to)| match to {
            Some(Target::NextRule) => (insn, Some(Target::At(next_rule))),
            other => (insn, other),
        }));
        if !conditional {
            // This rule matches everything: nothing after it can run.
            falls_through = false;
            break;
        }
    }

    // The exits: "return 0" and "return 1", each only if something leads
    // to it. Right after the rules comes "return 0" when the last rule can
    // fail to match. When it cannot (a catch-all `a`), its lone `goto` is
    // dropped and the exit it jumped to is placed right there instead.
    let mut exits = Vec::new();
    if falls_through {
        exits.push(Target::Deny);
    } else if let Some((_, Some(verdict))) = code.pop() {
        exits.push(verdict);
    }
    for exit in [Target::Deny, Target::Allow] {
        if !exits.contains(&exit) && code.iter().any(|(_, to)| *to == Some(exit)) {
            exits.push(exit);
        }
    }
    let (mut deny_at, mut allow_at) = (None, None);
    for exit in exits {
        let (at, verdict) = if exit == Target::Allow {
            (&mut allow_at, 1)
        } else {
            (&mut deny_at, 0)
        };
        *at = Some(code.len());
        code.push((Insn::mov(R0, verdict), None));
        code.push((Insn::exit(), None));
    }

    // A jump's offset counts from the instruction after the jump.
    code.into_iter()
        .enumerate()
        .map(|(index, (mut insn, to))| {
            let target = match to {
                None => return insn,
                Some(Target::At(at)) => at,
                Some(Target::Allow) => allow_at.expect("allow exit emitted"),
                Some(Target::Deny) => deny_at.expect("deny exit emitted"),
                Some(Target::NextRule) => unreachable!("resolved when the rule was added"),
            };
            insn.off = i16::try_from(target - index - 1).expect("program fits 16-bit jumps");
            insn
        })
        .collect()
}
// ANCHOR_END: program

/// Calls `bpf(cmd, attr, size_of(attr))` and returns its result, a file
/// descriptor for the commands that create one.
///
/// # Safety
///
/// `attr` must be the `union bpf_attr` layout for `cmd`, and every pointer
/// in it must be valid for as long as the call runs (the kernel reads the
/// instructions and license, and writes into the log buffer).
unsafe fn sys_bpf<T>(cmd: libc::c_long, attr: &T) -> std::result::Result<RawFd, Errno> {
    // SAFETY: guaranteed by the caller; the size tells the kernel how many
    // bytes of the union we filled in (it treats the rest as zero).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref(attr),
            size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(RawFd::try_from(ret).expect("a file descriptor fits in an int"))
    }
}

/// The beginning of `union bpf_attr` as `BPF_PROG_LOAD` reads it. The
/// 64-bit fields hold user-space addresses.
#[repr(C, align(8))]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The beginning of `union bpf_attr` as `BPF_PROG_ATTACH` reads it.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// One `BPF_PROG_LOAD`, with the verifier's log written to `log` if given.
fn try_load(insns: &[Insn], log: Option<&mut [u8]>) -> std::result::Result<OwnedFd, Errno> {
    let mut prog_name = [0u8; 16];
    prog_name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        prog_name,
        ..ProgLoadAttr::default()
    };
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(log.len()).unwrap_or(u32::MAX);
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    // The kernel's struct bpf_insn puts dst_reg in the low half of the
    // register byte on little-endian machines and in the high half on
    // big-endian ones.
    #[cfg(target_endian = "big")]
    let swapped: Vec<Insn> = insns
        .iter()
        .map(|i| Insn {
            regs: i.regs.rotate_left(4),
            ..*i
        })
        .collect();
    #[cfg(target_endian = "big")]
    {
        attr.insns = swapped.as_ptr() as u64;
    }
    // SAFETY: the attr is the BPF_PROG_LOAD layout; the instructions, the
    // license and the log buffer all outlive the call.
    let fd = unsafe { sys_bpf(BPF_PROG_LOAD, &attr)? };
    // SAFETY: the kernel just created this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads the program, or explains why the kernel refused it.
fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let first = match try_load(insns, None) {
        Ok(fd) => return Ok(fd),
        Err(errno) => errno,
    };
    // Ask again, this time with room for the verifier's reasons.
    let mut log = vec![0u8; LOG_SIZE];
    if let Ok(fd) = try_load(insns, Some(&mut log)) {
        return Ok(fd);
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let count = insns.len();
    let plural = if count == 1 { "" } else { "s" };
    let mut op =
        format!("load the device program ({count} instruction{plural}) with bpf(BPF_PROG_LOAD)");
    if first == Errno::EPERM {
        op.push_str(
            " (loading BPF programs needs CAP_SYS_ADMIN or CAP_BPF; \
             kernels before 5.11 also count them against RLIMIT_MEMLOCK)",
        );
    }
    if !text.trim().is_empty() {
        // The log, indented, as a parenthesis before the error number.
        op.push_str(" (the verifier said:\n");
        for line in text.trim_end().lines() {
            op.push_str("    ");
            op.push_str(line);
            op.push('\n');
        }
        op.push(')');
    }
    Err(Error::sys(op, first))
}

// ANCHOR: attach
/// Loads the program for `rules` and attaches it to the cgroup v2
/// directory `dir`. From then on, every process in that cgroup (and in
/// the cgroups below it) can open or create only the devices the rules
/// allow; anything else fails with EPERM, even for root.
///
/// The program is attached with `BPF_F_ALLOW_MULTI`, as runc does: a
/// program attached to a parent cgroup keeps running too, and an access
/// needs every program's consent. Calling this twice on the same cgroup
/// therefore adds a second program, and only what both allow is allowed.
///
/// Nothing needs to be kept: the attached cgroup holds a reference to the
/// program, which lives until the cgroup is removed, so both file
/// descriptors are closed on return.
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let insns = program(rules);
    let prog = load(&insns)?;
    let cgroup = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| Error::io("open cgroup directory", dir, e))?;
    let attr = ProgAttachAttr {
        target_fd: fd_u32(cgroup.as_raw_fd()),
        attach_bpf_fd: fd_u32(prog.as_raw_fd()),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: the attr is the BPF_PROG_ATTACH layout and holds no pointers.
    unsafe { sys_bpf(BPF_PROG_ATTACH, &attr) }.map_err(|errno| {
        let hint = match errno {
            Errno::EBADF => " (the directory is not in a cgroup v2 hierarchy)",
            Errno::EPERM => " (a program attached above it does not allow programs below)",
            _ => "",
        };
        Error::sys(
            format!(
                "attach the device program to {} with bpf(BPF_PROG_ATTACH){hint}",
                dir.display()
            ),
            errno,
        )
    })?;
    tracing::debug!(
        cgroup = %dir.display(),
        rules = rules.len(),
        instructions = insns.len(),
        "attached device program"
    );
    Ok(())
}
// ANCHOR_END: attach

/// A descriptor as the `u32` field of `union bpf_attr`.
fn fd_u32(fd: RawFd) -> u32 {
    u32::try_from(fd).expect("an open file descriptor is never negative")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::path::PathBuf;
    use std::process::Command;

    use super::*;
    use crate::devices::{allowed, default_rules};

    /// The context the kernel passes to the program.
    #[derive(Debug, Clone, Copy)]
    struct Ctx {
        access_type: u32,
        major: u32,
        minor: u32,
    }

    impl Ctx {
        fn new(kind: DeviceKind, major: u32, minor: u32, access: u32) -> Ctx {
            let dev_type = match kind {
                DeviceKind::Char => BPF_DEVCG_DEV_CHAR,
                DeviceKind::Block => BPF_DEVCG_DEV_BLOCK,
                DeviceKind::All => unreachable!("a real device is char or block"),
            };
            Ctx {
                access_type: (access << 16) | dev_type,
                major,
                minor,
            }
        }
    }

    /// Executes the instructions [`program`] emits, like the kernel would,
    /// and returns r0. It only knows those instructions, and panics on
    /// anything the verifier would refuse: reading a register nobody
    /// wrote, reading outside the context, jumping backwards or out of
    /// the program.
    fn run(prog: &[Insn], ctx: Ctx) -> u32 {
        let mut regs = [0u64; 11];
        let mut written = 1u16 << R_CTX; // r1 holds the context pointer
        let mut pc = 0usize;
        loop {
            let insn = *prog
                .get(pc)
                .unwrap_or_else(|| panic!("ran off the end at {pc}"));
            let (dst, src) = (usize::from(insn.dst()), usize::from(insn.src()));
            let read = |r: usize, written: u16| {
                assert!(
                    written & (1 << r) != 0,
                    "insn {pc} reads r{r} before it is set"
                );
            };
            let mut next = pc + 1;
            match insn.code {
                c if c == BPF_LDX | BPF_MEM | BPF_W => {
                    assert_eq!(
                        src,
                        usize::from(R_CTX),
                        "insn {pc}: loads only from the context"
                    );
                    read(src, written);
                    regs[dst] = u64::from(match insn.off {
                        CTX_ACCESS_TYPE => ctx.access_type,
                        CTX_MAJOR => ctx.major,
                        CTX_MINOR => ctx.minor,
                        off => panic!("insn {pc}: no context field at offset {off}"),
                    });
                    written |= 1 << dst;
                }
                c if c == BPF_ALU64 | BPF_MOV | BPF_K => {
                    regs[dst] = i64::from(insn.imm) as u64;
                    written |= 1 << dst;
                }
                c if c == BPF_ALU64 | BPF_AND | BPF_K => {
                    read(dst, written);
                    regs[dst] &= i64::from(insn.imm) as u64;
                }
                c if c == BPF_ALU64 | BPF_RSH | BPF_K => {
                    read(dst, written);
                    regs[dst] >>= insn.imm;
                }
                c if c == BPF_JMP | BPF_JA => next += jump_offset(insn, pc),
                c if c == BPF_JMP | BPF_EXIT => {
                    read(usize::from(R0), written);
                    return u32::try_from(regs[0]).expect("verdict is 0 or 1");
                }
                c if c & 0x07 == BPF_JMP32 && c & 0x08 == BPF_K => {
                    read(dst, written);
                    let (a, b) = (regs[dst] as u32, insn.imm as u32);
                    let taken = match c & 0xf0 {
                        BPF_JEQ => a == b,
                        BPF_JNE => a != b,
                        BPF_JSET => a & b != 0,
                        op => panic!("insn {pc}: unknown jump {op:#x}"),
                    };
                    if taken {
                        next += jump_offset(insn, pc);
                    }
                }
                c => panic!("insn {pc}: unknown opcode {c:#04x}"),
            }
            pc = next;
        }
    }

    /// A jump's offset, which must go forward: that is what makes every
    /// run of the program end.
    fn jump_offset(insn: Insn, pc: usize) -> usize {
        usize::try_from(insn.off).unwrap_or_else(|_| panic!("insn {pc} jumps backwards"))
    }

    /// Checks the program's shape the way the verifier's first pass does:
    /// every jump lands inside the program, no instruction is unreachable,
    /// and no path runs past the last instruction.
    fn check_shape(prog: &[Insn]) {
        let mut seen = vec![false; prog.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            assert!(pc < prog.len(), "a path leaves the program at {pc}");
            if std::mem::replace(&mut seen[pc], true) {
                continue;
            }
            let insn = prog[pc];
            let target = || pc + 1 + jump_offset(insn, pc);
            match insn.code {
                c if c == BPF_JMP | BPF_EXIT => {}
                c if c == BPF_JMP | BPF_JA => todo.push(target()),
                c if c & 0x07 == BPF_JMP32 => todo.extend([pc + 1, target()]),
                _ => todo.push(pc + 1),
            }
        }
        let dead: Vec<usize> = (0..prog.len()).filter(|&i| !seen[i]).collect();
        assert!(
            dead.is_empty(),
            "unreachable instructions {dead:?}:\n{}",
            disasm(prog)
        );
    }

    /// Prints instructions the way `llvm-objdump` and `bpftool` do, with
    /// jump targets as instruction numbers.
    fn disasm(prog: &[Insn]) -> String {
        let mut out = String::new();
        for (pc, insn) in prog.iter().enumerate() {
            let (d, s, imm) = (insn.dst(), insn.src(), insn.imm);
            let target = || pc as i64 + 1 + i64::from(insn.off);
            let text = match insn.code {
                c if c == BPF_LDX | BPF_MEM | BPF_W => {
                    format!("r{d} = *(u32 *)(r{s} + {})", insn.off)
                }
                c if c == BPF_ALU64 | BPF_MOV | BPF_K => format!("r{d} = {imm}"),
                c if c == BPF_ALU64 | BPF_AND | BPF_K => format!("r{d} &= {imm}"),
                c if c == BPF_ALU64 | BPF_RSH | BPF_K => format!("r{d} >>= {imm}"),
                c if c == BPF_JMP | BPF_JA => format!("goto {}", target()),
                c if c == BPF_JMP | BPF_EXIT => "exit".to_string(),
                c if c & 0x07 == BPF_JMP32 => {
                    let op = match c & 0xf0 {
                        BPF_JEQ => "==",
                        BPF_JNE => "!=",
                        BPF_JSET => "&",
                        _ => "?",
                    };
                    format!("if w{d} {op} {} goto {}", imm as u32, target())
                }
                c => format!("unknown {c:#04x}"),
            };
            out.push_str(&format!("{:<4}{text}\n", format!("{pc}:")));
        }
        out
    }

    fn rule(
        allow: bool,
        kind: DeviceKind,
        major: Option<u32>,
        minor: Option<u32>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: access.into(),
        }
    }

    /// What the program must answer: every requested access, asked on its
    /// own, is allowed by the last matching rule.
    fn expected(
        rules: &[DeviceRule],
        kind: DeviceKind,
        major: u32,
        minor: u32,
        access: u32,
    ) -> bool {
        [
            ('m', BPF_DEVCG_ACC_MKNOD),
            ('r', BPF_DEVCG_ACC_READ),
            ('w', BPF_DEVCG_ACC_WRITE),
        ]
        .into_iter()
        .filter(|(_, bit)| access & bit != 0)
        .all(|(letter, _)| allowed(rules, kind, major, minor, letter))
    }

    /// Runs the program for every device type, every non-empty set of
    /// accesses, and a set of numbers that includes each number the rules
    /// mention, and compares with [`expected`].
    fn check_against_allowed(rules: &[DeviceRule]) {
        let prog = program(rules);
        check_shape(&prog);
        let mut numbers: BTreeSet<u32> = [0, 1, 3, 5, 8, 136, 4095, 0x8000_0000, u32::MAX].into();
        for r in rules {
            numbers.extend(
                r.major
                    .iter()
                    .chain(&r.minor)
                    .flat_map(|&n| [n, n.wrapping_add(1)]),
            );
        }
        for kind in [DeviceKind::Char, DeviceKind::Block] {
            for &major in &numbers {
                for &minor in &numbers {
                    for access in 1..=7 {
                        let want = expected(rules, kind, major, minor, access);
                        let got = run(&prog, Ctx::new(kind, major, minor, access));
                        assert_eq!(
                            got,
                            u32::from(want),
                            "{kind:?} {major}:{minor} access {access:#05b} under rules\n{}\nprogram:\n{}",
                            rules
                                .iter()
                                .map(|r| format!(
                                    "  {}{r}\n",
                                    if r.allow { "allow " } else { "deny " }
                                ))
                                .collect::<String>(),
                            disasm(&prog)
                        );
                    }
                }
            }
        }
    }

    /// Rule lists that exercise every kind of rule and every shortcut
    /// [`program`] takes.
    fn rule_sets() -> Vec<Vec<DeviceRule>> {
        use DeviceKind::{All, Block, Char};
        // The default rules extended with a container's `--device` flags.
        let mut with_devices = default_rules();
        with_devices.push(rule(true, Char, Some(10), Some(229), "rwm")); // /dev/fuse
        with_devices.push(rule(true, Block, Some(8), Some(0), "r")); // /dev/sda, read-only
        vec![
            with_devices,
            default_rules(),
            vec![],
            vec![rule(true, All, None, None, "")],
            vec![rule(false, All, None, None, "rwm")],
            // Everything, except writing to /dev/null.
            vec![
                rule(true, All, None, None, ""),
                rule(false, Char, Some(1), Some(3), "w"),
            ],
            // Rules after a catch-all `a` are the only ones that matter.
            vec![
                rule(true, Char, Some(1), Some(3), "r"),
                rule(false, All, None, None, ""),
            ],
            vec![
                rule(false, All, None, None, ""),
                rule(true, Char, None, None, "m"),
                rule(true, Block, Some(8), None, "r"),
                rule(false, Block, Some(8), Some(1), "rw"),
                rule(true, Char, Some(1), Some(3), "rw"),
                rule(false, Char, Some(1), Some(3), "w"),
            ],
            // Letters in any order, unknown letters, no letters.
            vec![
                rule(true, Char, Some(1), None, "wr"),
                rule(true, Char, Some(5), None, "x"),
                rule(false, Char, Some(1), Some(9), ""),
            ],
            // An `a` rule with numbers, and numbers beyond 2^31.
            vec![
                rule(true, All, Some(7), None, ""),
                rule(false, Block, Some(7), Some(0x8000_0000), "m"),
                rule(true, Char, Some(u32::MAX), Some(u32::MAX), "rwm"),
            ],
            // A deny that only half overlaps what an allow granted.
            vec![
                rule(true, Char, None, None, "rw"),
                rule(false, Char, Some(1), None, "wm"),
            ],
        ]
    }

    #[test]
    fn program_agrees_with_allowed() {
        for rules in rule_sets() {
            check_against_allowed(&rules);
        }
    }

    #[test]
    fn program_agrees_with_allowed_on_generated_rules() {
        // A fixed pseudo-random sequence (xorshift), so a failure repeats.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let kinds = [DeviceKind::All, DeviceKind::Char, DeviceKind::Block];
        let accesses = ["", "r", "w", "m", "rw", "rm", "wm", "rwm"];
        for _ in 0..300 {
            let len = next(7);
            let rules: Vec<DeviceRule> = (0..len)
                .map(|_| {
                    let number = |n: u64| (n < 3).then_some(n as u32);
                    rule(
                        next(2) == 0,
                        kinds[next(3) as usize],
                        number(next(5)),
                        number(next(5)),
                        accesses[next(8) as usize],
                    )
                })
                .collect();
            check_against_allowed(&rules);
        }
    }

    #[test]
    fn disassembly_of_a_small_program() {
        let rules = vec![
            DeviceRule::allow_char(None, None, "m"),
            DeviceRule::allow_char(Some(1), Some(3), "rw"),
            rule(false, DeviceKind::Char, Some(1), Some(3), "w"),
        ];
        insta::assert_snapshot!(disasm(&program(&rules)), @r"
        0:  r2 = *(u32 *)(r1 + 0)
        1:  r2 &= 65535
        2:  r3 = *(u32 *)(r1 + 0)
        3:  r3 >>= 16
        4:  r4 = *(u32 *)(r1 + 4)
        5:  r5 = *(u32 *)(r1 + 8)
        6:  if w2 != 2 goto 10
        7:  if w4 != 1 goto 10
        8:  if w5 != 3 goto 10
        9:  if w3 & 4 goto 18
        10: if w2 != 2 goto 15
        11: if w4 != 1 goto 15
        12: if w5 != 3 goto 15
        13: r3 &= -7
        14: if w3 == 0 goto 20
        15: if w2 != 2 goto 18
        16: r3 &= -2
        17: if w3 == 0 goto 20
        18: r0 = 0
        19: exit
        20: r0 = 1
        21: exit
        ");
    }

    #[test]
    fn a_catch_all_rule_ends_the_program() {
        let rules = vec![
            DeviceRule::allow_char(Some(1), Some(3), "r"),
            rule(true, DeviceKind::All, None, None, ""),
        ];
        // The loads, then "allow": the rule before `a` can never decide.
        insta::assert_snapshot!(disasm(&program(&rules)), @r"
        0:  r2 = *(u32 *)(r1 + 0)
        1:  r2 &= 65535
        2:  r3 = *(u32 *)(r1 + 0)
        3:  r3 >>= 16
        4:  r4 = *(u32 *)(r1 + 4)
        5:  r5 = *(u32 *)(r1 + 8)
        6:  r0 = 1
        7:  exit
        ");
    }

    #[test]
    fn the_instruction_layout_matches_the_kernel() {
        // r2 = *(u32 *)(r1 + 4) is bytes 61 12 04 00 00 00 00 00 on x86.
        let insn = Insn::load_u32(2, 1, 4);
        assert_eq!(
            (insn.code, insn.regs, insn.off, insn.imm),
            (0x61, 0x12, 4, 0)
        );
        assert_eq!((insn.dst(), insn.src()), (2, 1));
        assert_eq!(Insn::exit().code, 0x95);
    }

    // ---- On the real kernel ----

    /// A test that cannot run says why; under CI=true that is a failure.
    fn cannot_run(test: &str, why: &str) {
        let why = format!("{test}: not run: {why}");
        if testkit::in_ci() {
            panic!("{why} — and CI=true, where a test that cannot run is a failure");
        }
        let _ = writeln!(std::io::stderr().lock(), "{why}");
    }

    /// Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on a pure
    /// v2 machine, /sys/fs/cgroup/unified on a "hybrid" one.
    fn cgroup2_mount() -> Option<PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        mountinfo.lines().find_map(|line| {
            let (fields, rest) = line.split_once(" - ")?;
            let fstype = rest.split_whitespace().next()?;
            let mount_point = fields.split_whitespace().nth(4)?;
            (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
        })
    }

    /// A cgroup made for one test, removed when the test ends, even if it
    /// panics. Removing the cgroup also detaches and frees its program.
    struct TestCgroup(PathBuf);

    impl TestCgroup {
        fn create(path: PathBuf) -> TestCgroup {
            std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
            TestCgroup(path)
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            // Right after its last process is reaped, a cgroup may still be
            // busy for a moment.
            for _ in 0..100 {
                match std::fs::remove_dir(&self.0) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => {
                        let _ = writeln!(std::io::stderr(), "rmdir {}: {e}", self.0.display());
                        return;
                    }
                    Ok(()) => return,
                }
            }
            let _ = writeln!(std::io::stderr(), "rmdir {}: still busy", self.0.display());
        }
    }

    /// Runs busybox with `args` inside the cgroup whose `cgroup.procs` is
    /// open as `procs`.
    fn busybox_in(procs: &std::fs::File, args: &[&str]) -> std::process::Output {
        let fd = procs.as_raw_fd();
        let mut cmd = Command::new("/bin/busybox");
        cmd.args(args);
        // SAFETY: between fork and exec the hook only calls write(2),
        // which is safe there; the descriptor stays open in the parent
        // until the child has exec'd.
        unsafe {
            cmd.pre_exec(move || {
                // Writing "0" moves the writing process itself.
                if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd.output().expect("run /bin/busybox in the test cgroup")
    }

    #[test]
    fn attached_program_filters_devices() {
        let test = "attached_program_filters_devices";
        if !testkit::require_root(test) {
            return;
        }
        let Some(mount) = cgroup2_mount() else {
            return cannot_run(test, "no cgroup2 filesystem is mounted");
        };
        let name = format!("berth-bpf-test-{}", std::process::id());
        let cgroup = TestCgroup::create(mount.join(&name));
        attach(&cgroup.0, &default_rules()).expect("attach the default rules");

        // A node for /dev/mem (char 1:1), which no default rule allows.
        let tmp = tempfile::tempdir().unwrap();
        let mem = tmp.path().join("mem");
        nix::sys::stat::mknod(
            &mem,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 1),
        )
        .expect("mknod c 1 1");
        // Outside the cgroup, opening it must not fail with EPERM (it may
        // fail otherwise: ENXIO when the kernel has no /dev/mem), or the
        // check below would prove nothing.
        if let Err(e) = std::fs::File::open(&mem) {
            assert!(
                !matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)),
                "{} is refused even outside the cgroup ({e}); is {} mounted nodev?",
                mem.display(),
                tmp.path().display()
            );
        }

        let procs = OpenOptions::new()
            .write(true)
            .open(cgroup.0.join("cgroup.procs"))
            .expect("open cgroup.procs");
        let text = |out: &std::process::Output| {
            format!(
                "status {}, stdout {:?}, stderr {:?}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };

        let inside = busybox_in(&procs, &["cat", "/proc/self/cgroup"]);
        let line = format!("0::/{name}\n");
        assert!(
            String::from_utf8_lossy(&inside.stdout).contains(&line),
            "the child is not in the test cgroup: {}",
            text(&inside)
        );

        let null = busybox_in(&procs, &["cat", "/dev/null"]);
        assert!(
            null.status.success(),
            "reading /dev/null was refused: {}",
            text(&null)
        );

        let mem_path = mem.to_str().unwrap();
        let denied = busybox_in(&procs, &["head", "-c1", mem_path]);
        assert!(
            !denied.status.success()
                && String::from_utf8_lossy(&denied.stderr).contains("Operation not permitted"),
            "opening char 1:1 was not refused with EPERM: {}",
            text(&denied)
        );

        // Creating a node is allowed (`c *:* m`): opening it is checked again.
        let again = tmp.path().join("mem-again");
        let made = busybox_in(&procs, &["mknod", again.to_str().unwrap(), "c", "1", "1"]);
        assert!(made.status.success(), "mknod was refused: {}", text(&made));
    }

    #[test]
    fn kernel_accepts_every_generated_program() {
        if !testkit::require_root("kernel_accepts_every_generated_program") {
            return;
        }
        // Loading without attaching touches no cgroup; the program is freed
        // when its descriptor closes.
        for rules in rule_sets() {
            if let Err(e) = load(&program(&rules)) {
                panic!("{e}\nrules: {rules:?}");
            }
        }
    }

    #[test]
    fn a_refused_program_comes_with_the_verifiers_reasons() {
        if !testkit::require_root("a_refused_program_comes_with_the_verifiers_reasons") {
            return;
        }
        // `exit` without setting r0 first: the verifier refuses to return
        // an undefined value.
        let message = load(&[Insn::exit()]).unwrap_err().to_string();
        assert!(message.contains("the verifier said:"), "{message}");
        assert!(message.contains("R0 !read_ok"), "{message}");
    }

    #[test]
    fn attaching_to_a_plain_directory_fails() {
        if !testkit::require_root("attaching_to_a_plain_directory_fails") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let err = attach(tmp.path(), &default_rules()).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("not in a cgroup v2 hierarchy"),
            "{message}"
        );
    }
}
