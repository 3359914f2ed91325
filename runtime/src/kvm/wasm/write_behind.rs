//! Write-behind: `fd_write` to stdout and stderr without leaving the VM.
//!
//! Each host call is a VM exit, about 25 us on PVM (1-2 us on VMX), and a guest that prints
//! line by line (Rust's `println!` is line-buffered) makes one per line. So an import whose
//! host function offers a [`WriteBehind`] gets the write-behind stub as its dispatcher instead
//! of the host-call stub. The stub, guest code in the stub page, does in the guest what the
//! host would: it checks the call against the guest's memory exactly as the host function
//! does (the `nwritten` pointer, the iovec array, every buffer in bounds; at most
//! `max_iovecs` buffers; no more bytes than the stream has room for now), copies the bytes into
//! the instance's write log, stores `nwritten` and answers success. Any call it cannot answer
//! exactly so (another fd, a bad pointer, too many bytes, a full log) goes to the host-call
//! stub, as without write-behind.
//!
//! The host empties the log whenever the guest stops (any host call, a return, a trap, an
//! interrupt), before it does anything else, replaying each logged call in order through
//! [`WriteBehind::replay`]: the same output, the same hostcall count, the same dmesg lines as
//! if each had exited. Before the guest runs again it tells the stub the room of fds 1 and 2
//! ([`WriteBehind::room`]), so deferring never changes what a call answers.
//!
//! The log is guest-writable memory in the instance region: the host reads it only through
//! bounds-checked copies, as untrusted data; a log that does not parse ends the invocation.
//!
//! ```text
//!  write log  +0   used: bytes of records after the header
//!             +8   room for fd 1 (0: do not defer)      } written by the host before each run,
//!             +16  room for fd 2                        } lowered by the stub
//!             +24  capacity: bytes for records
//!             +32  address of the memory's definition {base, length} (0: no memory)
//!             +40  max_iovecs
//!             +64  records: fd, iovs, iovs_len, nwritten (u32 each), bytes (u64), then the
//!                  bytes, padded to 8
//! ```

use super::core::VmCore;
use super::layout::HOST_CALL_STUB;
use super::WasmVmError;
use fnvm_abi::vmoffsets::{def, VALUE_SLOT_SIZE};

/// Bytes of the write log (header included).
pub(super) const WRITE_LOG_BYTES: u64 = 64 * 1024;

const USED: u64 = 0;
const ROOM_FD1: u64 = 8;
const ROOM_FD2: u64 = 16;
const CAPACITY: u64 = 24;
const MEMORY_DEF: u64 = 32;
const MAX_IOVECS: u64 = 40;
const HEADER: u64 = 64;
const RECORD: u64 = 24;

// The stub. Entered from an import's host-call trampoline as its dispatcher, with the System V
// arguments rdi = the import's context (its second word: the write log), rsi = the caller's
// vmctx, rdx = the value slots (fd, iovs, iovs_len, nwritten; the result goes in slot 0). It
// may clobber what the ABI lets a callee clobber, but on its way to the host-call stub rdi,
// rdx, rsp and rbp are as on entry: the host reads them. It lives in .rodata: never executable
// in the host, only copied into the guest's stub page.
std::arch::global_asm!(
    ".pushsection .rodata.fnvm_kvm_write_behind,\"a\",@progbits",
    ".p2align 4",
    ".globl fnvm_kvm_write_behind_stub",
    ".hidden fnvm_kvm_write_behind_stub",
    "fnvm_kvm_write_behind_stub:",
    "mov r11, qword ptr [rdi + 8]",
    // Which fd: 1 or 2, with room, else the host.
    "mov eax, dword ptr [rdx]",
    "cmp eax, 1",
    "je 21f",
    "cmp eax, 2",
    "jne 90f",
    "mov r10, qword ptr [r11 + {room2}]",
    "jmp 22f",
    "21:",
    "mov r10, qword ptr [r11 + {room1}]",
    "22:",
    "test r10, r10",
    "jz 90f",
    "mov rcx, qword ptr [r11 + {memory_def}]",
    "test rcx, rcx",
    "jz 90f",
    "mov r9d, dword ptr [rdx + {iovs_len}]",
    "cmp r9, qword ptr [r11 + {max_iovecs}]",
    "ja 90f",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov r13, r10",
    "mov r15, qword ptr [rcx + {base}]",
    "mov r14, qword ptr [rcx + {length}]",
    // The iovec array and the nwritten word in bounds (u32 + small: no overflow in 64 bits).
    "mov r8d, dword ptr [rdx + {iovs}]",
    "lea rax, [r8 + r9 * 8]",
    "cmp rax, r14",
    "ja 80f",
    "mov eax, dword ptr [rdx + {nwritten}]",
    "add rax, 4",
    "cmp rax, r14",
    "ja 80f",
    // Every buffer in bounds; their total (rax) within the room.
    "xor eax, eax",
    "mov rsi, r8",
    "mov rcx, r9",
    "31:",
    "test rcx, rcx",
    "jz 32f",
    "mov r12d, dword ptr [r15 + rsi]",
    "mov ebx, dword ptr [r15 + rsi + 4]",
    "add r12, rbx",
    "cmp r12, r14",
    "ja 80f",
    "add rax, rbx",
    "cmp rax, r13",
    "ja 80f",
    "add rsi, 8",
    "dec rcx",
    "jmp 31b",
    "32:",
    // The record's size (rbx) must fit the log; r14 (the memory's length is checked against
    // already) becomes the log's new length, r13 the stream's new room.
    "lea rbx, [rax + {record} + 7]",
    "and rbx, -8",
    "mov r12, qword ptr [r11]",
    "lea r14, [r12 + rbx]",
    "cmp r14, qword ptr [r11 + {capacity}]",
    "ja 80f",
    // Nothing below fails. The record is written first and counted last, so a guest
    // interrupted in between (a deadline's kick) leaves no half-written record.
    "sub r13, rax",
    "lea rdi, [r11 + r12 + {header}]",
    "mov ecx, dword ptr [rdx]",
    "mov dword ptr [rdi], ecx",
    "mov dword ptr [rdi + 4], r8d",
    "mov dword ptr [rdi + 8], r9d",
    "mov ecx, dword ptr [rdx + {nwritten}]",
    "mov dword ptr [rdi + 12], ecx",
    "mov qword ptr [rdi + 16], rax",
    "mov r12, rax",
    "add rdi, {record}",
    "mov r10, r8",
    "mov rbx, r9",
    "51:",
    "test rbx, rbx",
    "jz 52f",
    "mov esi, dword ptr [r15 + r10]",
    "add rsi, r15",
    "mov ecx, dword ptr [r15 + r10 + 4]",
    "rep movsb",
    "add r10, 8",
    "dec rbx",
    "jmp 51b",
    "52:",
    // nwritten; the record counted, the room lowered; errno 0 as the result.
    "mov ecx, dword ptr [rdx + {nwritten}]",
    "mov dword ptr [r15 + rcx], r12d",
    "mov ecx, dword ptr [rdx]",
    "cmp ecx, 1",
    "jne 41f",
    "mov qword ptr [r11 + {room1}], r13",
    "jmp 42f",
    "41:",
    "mov qword ptr [r11 + {room2}], r13",
    "42:",
    "mov qword ptr [r11], r14",
    "mov qword ptr [rdx], 0",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "xor eax, eax",
    "ret",
    "80:",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "90:",
    "mov eax, {host_call}",
    "jmp rax",
    ".globl fnvm_kvm_write_behind_stub_end",
    ".hidden fnvm_kvm_write_behind_stub_end",
    "fnvm_kvm_write_behind_stub_end:",
    ".popsection",
    room1 = const ROOM_FD1,
    room2 = const ROOM_FD2,
    capacity = const CAPACITY,
    memory_def = const MEMORY_DEF,
    max_iovecs = const MAX_IOVECS,
    header = const HEADER,
    record = const RECORD,
    base = const def::BASE,
    length = const def::LENGTH,
    iovs = const VALUE_SLOT_SIZE,
    iovs_len = const 2 * VALUE_SLOT_SIZE,
    nwritten = const 3 * VALUE_SLOT_SIZE,
    host_call = const HOST_CALL_STUB,
);

unsafe extern "C" {
    static fnvm_kvm_write_behind_stub: u8;
    static fnvm_kvm_write_behind_stub_end: u8;
}

/// The stub's machine code (position independent: its only jump out is to an absolute
/// address in the stub page).
pub(super) fn stub_code() -> &'static [u8] {
    // SAFETY: both symbols are defined above, in one section, start before end; the bytes
    // between them are the assembled stub, immutable data of this binary.
    unsafe {
        let start = &raw const fnvm_kvm_write_behind_stub;
        let end = &raw const fnvm_kvm_write_behind_stub_end;
        std::slice::from_raw_parts(start, end.offset_from(start) as usize)
    }
}

/// One logged call.
pub(super) struct Record<'a> {
    pub(super) args: [u32; 4],
    pub(super) bytes: &'a [u8],
}

impl VmCore {
    /// Sets up an empty write log for a fresh instance (no room until the host says).
    pub(super) fn init_write_log(&self, max_iovecs: u32) -> Result<(), WasmVmError> {
        let l = &self.layout;
        if l.write_log_len == 0 {
            return Ok(());
        }
        let at = |field: u64| l.write_log + field;
        let memory_def = match &self.memory {
            Some(_) => l.vmctx + u64::from(fnvm_abi::VmOffsets::DEFINED_MEMORY),
            None => 0,
        };
        self.put(at(USED), 0)?;
        self.put(at(ROOM_FD1), 0)?;
        self.put(at(ROOM_FD2), 0)?;
        self.put(at(CAPACITY), l.write_log_len - HEADER)?;
        self.put(at(MEMORY_DEF), memory_def)?;
        self.put(at(MAX_IOVECS), u64::from(max_iovecs))
    }

    /// Tells the stub how many bytes fds 1 and 2 take now (the log is empty then).
    pub(super) fn set_write_rooms(&self, fd1: u64, fd2: u64) -> Result<(), WasmVmError> {
        let l = &self.layout;
        self.put(l.write_log + ROOM_FD1, fd1)?;
        self.put(l.write_log + ROOM_FD2, fd2)
    }

    /// Takes the logged calls out of the log (emptying it), into `buf`, and hands each to
    /// `replay` in order.
    pub(super) fn drain_write_log(
        &self,
        buf: &mut Vec<u8>,
        mut replay: impl FnMut(Record<'_>),
    ) -> Result<(), WasmVmError> {
        let l = &self.layout;
        let off = l.write_log - l.base;
        let used = self.region.read_u64(off + USED)?;
        if used == 0 {
            return Ok(());
        }
        if used > l.write_log_len - HEADER {
            return Err(WasmVmError::BadExit("a write log longer than its capacity"));
        }
        buf.resize(used as usize, 0);
        self.region.read(off + HEADER, buf)?;
        self.region.write_u64(off + USED, 0)?;
        let bad = || WasmVmError::BadExit("a write log that does not parse");
        let mut rest = &buf[..];
        while !rest.is_empty() {
            let (head, tail) = rest.split_at_checked(RECORD as usize).ok_or_else(bad)?;
            let u32_at =
                |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
            let len = u64::from_le_bytes(head[16..24].try_into().unwrap_or_default());
            // The stub pads each record to 8 bytes (len is at most the log's capacity here).
            let padded = len
                .checked_add(RECORD + 7)
                .map(|n| n / 8 * 8 - RECORD)
                .ok_or_else(bad)?;
            if padded > tail.len() as u64 {
                return Err(bad());
            }
            replay(Record {
                args: [u32_at(0), u32_at(4), u32_at(8), u32_at(12)],
                bytes: &tail[..len as usize],
            });
            rest = &tail[padded as usize..];
        }
        Ok(())
    }
}
