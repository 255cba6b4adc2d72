"""Host link gateware: frames in on one byte stream, answers out on another.

Implements the device side of ``docs/protocol.md`` (whose executable host-side
definition is ``host/protocol.py``; ``tests/hw/test_link.py`` pins the codes
below to it). A WRITE's payload lands in a staging RAM and reaches the memory
bus only after the frame's CRC verified, so a corrupted or truncated frame
never touches memory.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .bram import BlockRAM
from .crc import CRC32, CRC32_POLY, CRC32_RESIDUE
from .fanout import copies
from .isa import Space

__all__ = [
    "Command", "Reply", "NakCode", "Space", "StatusFlag", "Feature",
    "address_layout", "header_layout", "write_layout", "status_layout",
    "HostBusSignature", "HostLink",
    "SYNC", "MAX_PAYLOAD", "PROTOCOL_VERSION", "N_COUNTERS",
]

SYNC = 0xA5
MAX_PAYLOAD = 1024
PROTOCOL_VERSION = 3
N_COUNTERS = 5
_HEADER_BYTES = 10   # after the sync byte
_CRC_BYTES = 4


class Command(enum.Enum, shape=8):
    """Request codes."""
    WRITE = 0x01
    READ = 0x02
    RUN = 0x03
    STATUS = 0x04
    RESET = 0x05
    WRITE_GROUPS = 0x06


class Reply(enum.Enum, shape=8):
    """Response codes."""
    ACK = 0x80
    NAK = 0x81


class NakCode(enum.Enum, shape=8):
    """Payload byte of a NAK."""
    BAD_CRC = 0x01
    TRUNCATED = 0x02
    TOO_LONG = 0x03
    UNKNOWN_COMMAND = 0x04
    BAD_LENGTH = 0x05
    BAD_ADDRESS = 0x06
    BAD_ARGUMENT = 0x07
    BUSY = 0x08


class Feature(enum.Flag, shape=16):
    """Bits of STATUS ``features``: optional commands the device serves."""
    WRITE_GROUPS = 0x0001


class StatusFlag(enum.Flag, shape=8):
    """Bits of the STATUS flags byte."""
    RUNNING = 0x01
    DONE = 0x02
    WATCHDOG = 0x04


#: A frame's 32-bit ``addr``: byte offset in the low 28 bits, space in the top 4.
address_layout = data.StructLayout({
    "offset": unsigned(28),
    "space":  Space,
})

#: The 10 header bytes after the sync byte, byte 0 in the least significant bits.
header_layout = data.StructLayout({
    "cmd":  unsigned(8),
    "seq":  unsigned(8),
    "addr": address_layout,
    "len":  unsigned(32),
})

#: One byte written to accelerator memory.
write_layout = data.StructLayout({
    "addr": address_layout,
    "data": unsigned(8),
})

#: Payload of the ACK to STATUS; payload byte i is bits [8i, 8i+8).
status_layout = data.StructLayout({
    "flags":       StatusFlag,
    "version":     unsigned(8),
    "max_payload": unsigned(16),
    "run_cycles":  unsigned(32),
    "counters":    data.ArrayLayout(unsigned(32), N_COUNTERS),
    # What the device is: its array and memory sizes (0: not an accelerator), so the host
    # refuses a program compiled for another config before sending it.
    "rows":        unsigned(8),
    "cols":        unsigned(8),
    "features":    unsigned(16),         # Feature bits: the optional commands it serves
    "space_bytes": data.ArrayLayout(unsigned(32), 4),
})
_STATUS_BYTES = status_layout.size // 8


class HostBusSignature(wiring.Signature):
    """What the link drives into the accelerator (directions as seen from the link).

    Members
    -------
    write : Out(stream(write_layout))
        One byte per beat; the memory may stall with ``ready`` low.
    read_addr : Out(stream(address_layout))
        Read request for one byte; the link has at most one request outstanding.
    read_data : In(stream(8))
        The byte for the oldest request; any latency.
    start : Out(1)
        One-cycle pulse: run the program at ``program``.
    program : Out(28)
        Byte offset of the program in the PROGRAM space, valid with ``start``.
    reset : Out(1)
        One-cycle pulse: abort any run (RESET command or watchdog expiry).
    done : In(1)
        One-cycle pulse from the accelerator when a run finishes.
    counters : In(ArrayLayout(32, N_COUNTERS))
        Performance counters (cycles, busy cycles, MACs, stall cycles) and the index of
        the descriptor executing (or last executed), sent by STATUS.
    """

    def __init__(self):
        super().__init__({
            "write":     Out(stream.Signature(write_layout)),
            "read_addr": Out(stream.Signature(address_layout)),
            "read_data": In(stream.Signature(8)),
            "start":     Out(1),
            "program":   Out(28),
            "reset":     Out(1),
            "done":      In(1),
            "counters":  In(data.ArrayLayout(unsigned(32), N_COUNTERS)),
        })


def _residue_step():
    """(rest, index): a CRC-32 register s steps to CRC32_RESIDUE on a byte exactly when
    s >> 8 == rest and (s ^ byte) & 0xFF == index. A byte steps s to
    (s >> 8) ^ T[(s ^ byte) & 0xFF], and the 256 T[x] differ in their top bytes."""
    def step(x):                              # the register x after a zero byte: T[x]
        for _ in range(8):
            x = x >> 1 ^ (CRC32_POLY if x & 1 else 0)
        return x
    table = [step(x) for x in range(256)]
    index, = (x for x in range(256) if table[x] >> 24 == CRC32_RESIDUE >> 24)
    return (CRC32_RESIDUE ^ table[index]) & 0xFFFFFF, index


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")


class HostLink(wiring.Component):
    """Device end of the host link protocol.

    Parameters
    ----------
    timeout : int
        Inter-byte timeout in cycles: a frame that stalls this long is answered
        with NAK TRUNCATED, and after a bad frame the link waits for the line to
        stay quiet this long before it answers. Pick several byte times of the
        physical link (a UART byte at 115200 baud is ~434 cycles at 50 MHz).
    max_payload : int
        Staging RAM size in bytes: the longest WRITE or READ the device accepts
        (reported in STATUS). At most the protocol maximum, 1024.
    shape : (rows, cols)
        The array the link serves, reported in STATUS with the space sizes (0, 0: none).
    space_sizes : dict[Space, int] or None
        Bytes in each memory space; accesses past the end are refused with NAK
        BAD_ADDRESS. Default: the full 28-bit offset range of every space.
    compact_status : bool
        Send the STATUS fields that change (flags, cycles, counters) as they are when
        each byte goes out, with no snapshot (a STATUS during a run may show a count
        torn between its bytes; after the run they hold still); bounds checked in the
        spaces' width; the CRC a bit a cycle (the link takes a byte every 8 cycles at
        most); the checks, the bytes sent and the memory bus's strobes decoded where
        they are used, not into registers. The same bytes on the line once a run is
        over, in fewer cells (yosys, the link alone with 256 bytes of staging, iCE40:
        957 LUTs and 363 flip-flops against 1,089 and 658)
        (``AcceleratorConfig.compact_link``).
    group_writes : bool
        Serve WRITE_GROUPS (reported in STATUS ``features``): a payload's groups
        zero-filled in memory, so the host sends a tensor without the banks' padding.
        ~250 logic cells on an iCE40 (wider write counters); without it WRITE_GROUPS is
        an unknown command.

    Ports
    -----
    i_stream : In(stream.Signature(8))
        Bytes from the host.
    o_stream : Out(stream.Signature(8))
        Bytes to the host.
    bus : Out(HostBusSignature())
        Accelerator memory, run control and counters.
    """

    def __init__(self, timeout, *, max_payload=MAX_PAYLOAD, space_sizes=None, shape=(0, 0),
                 compact_status=False, group_writes=True):
        _check_int("inter-byte timeout", timeout, 2, 2**32 - 1)
        _check_int("max payload", max_payload, 1, MAX_PAYLOAD)
        sizes = {space: 1 << 28 for space in Space}
        if space_sizes is not None:
            for space, size in dict(space_sizes).items():
                if not isinstance(space, Space):
                    raise ValueError(f"space_sizes keys must be Space members, not {space!r}")
                _check_int(f"size of space {space.name}", size, 1, 1 << 28)
                sizes[space] = size
        self.timeout = timeout
        self.max_payload = max_payload
        self.space_sizes = sizes
        self.space_sizes_known = space_sizes is not None
        self.shape = tuple(shape)
        self.compact_status = compact_status
        self.group_writes = group_writes
        for what, value in zip(("rows", "cols"), self.shape):
            _check_int(f"reported {what}", value, 0, 255)
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "o_stream": Out(stream.Signature(8)),
            "bus":      Out(HostBusSignature()),
        })

    def elaborate(self, platform):
        m = Module()
        # compact_status: a bit-serial CRC (8 cycles a byte; a UART byte takes ~80)
        m.submodules.crc = crc = CRC32(serial=self.compact_status)
        # the CRC is free for a byte (always, but for the serial one's 8 cycles)
        crc_free = ~crc.busy if self.compact_status else 1
        # (hw.bram: on an ECP5 the block's own output register holds the byte read.)
        # Without compact_status a payload byte is written a cycle late, its address and
        # enable registered beside the block and the byte in a register: the state's
        # decode was two LUTs and a 4.9 ns route into the block. The COMMIT that reads
        # it comes after four CRC bytes at least.
        write_late = not self.compact_status
        m.submodules.staging = staging = BlockRAM(8, self.max_payload,
                                                  write_ahead=int(write_late))
        stage_w, stage_r = staging.write, staging.read[0]
        if write_late:
            stage_byte = Signal(8, reset_less=True)
            m.d.sync += stage_byte.eq(self.i_stream.payload)
            m.d.comb += stage_w.data.eq(stage_byte)

        i, o, bus = self.i_stream, self.o_stream, self.bus
        count_max = max(self.max_payload, _STATUS_BYTES, _HEADER_BYTES + 1)
        features = Feature.WRITE_GROUPS if self.group_writes else Feature(0)
        # A WRITE_GROUPS writes up to 255 bytes per payload byte; `cnt` counts them.
        groups = self.group_writes
        write_max = 255 * self.max_payload if groups else count_max

        hdr = Signal(header_layout)
        cnt = Signal(range(max(count_max, write_max) + 1))
        arg = Signal(32)                      # the last 4 payload bytes, little endian
        idle = Signal(range(self.timeout))
        nak_code = Signal(NakCode, init=NakCode.BAD_CRC)
        # what is decoded from the header for later states: into registers, but where
        # compact_status saves the flip-flops
        decoded = m.d.comb if self.compact_status else m.d.sync

        # the reply differs from ACK in its NAK bit only, and the byte mux reads that bit
        resp_nak = Signal()
        resp_cmd = Mux(resp_nak, Reply.NAK, Reply.ACK)
        resp_len = Signal(range(count_max + 1))
        from_memory = Signal()                # the payload is READ data, not resp_data
        # the NAK's code in a byte of its own, so that a NAK never writes the STATUS fields
        nak_byte = Signal(8)
        resp_data = Signal(status_layout)     # the STATUS payload
        read_byte = Signal(8)

        running = Signal()
        flags = Signal(StatusFlag)
        run_cycles = Signal(32)
        if self.compact_status:
            # no snapshot: the flags, cycles and counters as they are when each byte is
            # sent (they hold still once a run is over; during a run a count may be torn
            # between its bytes)
            shown_flags, shown_cycles, shown_counters = flags, run_cycles, bus.counters
        else:
            # a snapshot taken as the frame executes, whatever the command (its payload
            # is sent only for a STATUS): its ~200 flip-flops load in EXECUTE on copies
            # (one a word) of `in_check`, not on the command's decoding
            shown_flags = Signal(StatusFlag)
            shown_cycles = Signal(32)
            shown_counters = Signal.like(bus.counters)
            in_check = Signal()               # high exactly in CHECK (see there)
            snapshot = copies(m, platform, in_check, N_COUNTERS + 1, "link_snapshot")
            for load, field, value in zip(
                    snapshot, [Cat(shown_flags, shown_cycles), *shown_counters],
                    [Cat(flags, run_cycles), *bus.counters]):
                with m.If(load):
                    m.d.sync += field.eq(value)
        # the constant fields are wired in
        m.d.comb += [
            resp_data.flags.eq(shown_flags),
            resp_data.version.eq(PROTOCOL_VERSION),
            resp_data.max_payload.eq(self.max_payload),
            resp_data.run_cycles.eq(shown_cycles),
            resp_data.counters.eq(shown_counters),
            resp_data.rows.eq(self.shape[0]),
            resp_data.features.eq(features),
            resp_data.cols.eq(self.shape[1]),
            *(resp_data.space_bytes[space.value].eq(
                self.space_sizes[space] if self.space_sizes_known else 0)
              for space in Space),
        ]
        limit = Signal(32)                    # the watchdog's cycles (see run control)
        last_seq = Signal(8)
        last_was_run = Signal()               # last verified frame was an ACKed RUN

        # WRITE_GROUPS geometry (1 and 1 for a WRITE, so one commit path serves both):
        # each `g_width` payload bytes, then zeros up to `g_group` bytes. While the
        # payload arrives, `total` adds up the bytes the commit will write and `rx_lane`
        # the position in the current group (0 at the end: whole groups). Without
        # group writes the commit writes staging byte `cnt` to offset `cnt`.
        if groups:
            total_last = Signal(range(write_max + 1))   # bytes to write - 1, a register
            is_groups = Signal()
            g_width = Signal(8)
            g_group = Signal(8)
            rx_lane = Signal(8)
            total = Signal(range(write_max + 1))
            # (a register but with compact_status: hdr.cmd holds still from the header's
            # first byte on, long before the payload and the bounds check use it)
            decoded += is_groups.eq(hdr.cmd == Command.WRITE_GROUPS)
            m.d.sync += total_last.eq(total - 1)
            # a group's last lane, for the width and the group (0x1FF for 0: none), in
            # registers: g_width is set by the payload's first byte and read from its
            # third on, g_group long before the commit
            width_last = Signal(9)
            group_last = Signal(9)
            m.d.sync += [width_last.eq(g_width - 1), group_last.eq(g_group - 1)]
            # the payload byte is a WRITE_GROUPS's width (the first) or group (the
            # second): flags set in LENGTH and shifted by each byte, not compares of cnt
            at_width = Signal()
            at_group = Signal()
            src = Signal(range(self.max_payload + 1))   # commit: the staging byte to write
            lane = Signal(8)                            # commit: position in the group
            fill = Signal()                             # commit: lane >= g_width (zeros)
        else:
            src, fill = cnt, Const(0)

        # --- run control and watchdog: concurrent with the frame FSM, which
        # overrides these assignments when RUN or RESET execute.
        m.d.comb += bus.program.eq(hdr.addr.offset)
        if self.compact_status:
            at_limit = run_cycles == limit
            with m.If(running):
                with m.If(bus.done):
                    m.d.sync += [running.eq(0), flags.eq(StatusFlag.DONE)]
                with m.Elif(at_limit):
                    m.d.comb += bus.reset.eq(1)
                    m.d.sync += [running.eq(0), flags.eq(StatusFlag.WATCHDOG)]
                with m.Else():
                    m.d.sync += run_cycles.eq(run_cycles + 1)
        else:
            # A run goes on (`run_on`) while `running` and short of its watchdog, in a
            # register, so that bus.done, late (a route across the die), meets registers
            # only: `running` next is run_on & ~bus.done, not the done / watchdog / else
            # chain, and the watchdog ends a run where `running` is high and run_on low.
            # `last_step` marks the run's last step, where run_cycles reaches the watchdog
            # cycles less one: compared a cycle ahead as run_cycles steps by one, against
            # `limit`, the watchdog cycles less two (RUN loads it so, and last_step for
            # its first step), so that no add comes before the 32-bit compare and no
            # compare after bus.done. RUN sets run_on and RESET clears it (below); CHECK's
            # BUSY check reads a copy of its own (else yosys reads `going` there, a LUT
            # after bus.done).
            last_step = Signal()
            arg_one = Signal()                    # RUN's argument (it holds still) is 1
            m.d.sync += arg_one.eq(arg == 1)
            run_on_next = Signal()
            run_on, run_on_check = copies(m, platform, run_on_next, 2, "link_run_on")
            going = run_on & ~bus.done            # a run goes on in the next cycle
            m.d.sync += running.eq(going)
            m.d.comb += run_on_next.eq(going & ~last_step)
            with m.If(going):
                m.d.sync += [run_cycles.eq(run_cycles + 1),
                             last_step.eq(run_cycles == limit)]
            with m.If(running & ~run_on & ~bus.done):
                m.d.comb += bus.reset.eq(1)
            with m.If(running & (~run_on | bus.done)):        # the run ends
                m.d.sync += flags.eq(Mux(bus.done, StatusFlag.DONE, StatusFlag.WATCHDOG))

        # --- address checks for the verified frame in EXECUTE.
        space_size = Signal(29)
        space_ok = Signal()
        with m.Switch(hdr.addr.space):
            for space in Space:
                with m.Case(space):
                    decoded += [space_size.eq(self.space_sizes[space]), space_ok.eq(1)]
            if not self.compact_status:
                with m.Default():
                    decoded += space_ok.eq(0)
        access_len = Signal(32)
        decoded += access_len.eq(hdr.len)
        with m.If(hdr.cmd == Command.READ):
            decoded += access_len.eq(arg)
        if groups:
            with m.Elif(is_groups):
                decoded += access_len.eq(total)
        # The header and the argument hold still from the CRC state on (at least five
        # cycles before EXECUTE: four CRC bytes and CHECK), so the checks on them are
        # registered: EXECUTE's priority chain then starts from flip-flops, not from a
        # 32-bit add and compare.
        crc_ok = Signal()
        in_bounds = Signal()
        program_ok = Signal()
        len_zero = Signal()
        len_four = Signal()
        arg_zero = Signal()
        arg_too_long = Signal()
        same_seq = Signal()
        if self.compact_status:
            # every space is under 2**bits bytes: an offset or a length with a higher bit
            # set is out of bounds, and the rest is a (bits + 1)-bit add
            bits = max(self.space_sizes.values()).bit_length()
            beyond = (hdr.addr.offset[bits:] != 0) | (access_len[bits:] != 0)
            fits = ~beyond & (hdr.addr.offset[:bits] + access_len[:bits] <= space_size)
        else:
            # the length's pick (access_len), the add and the compare a cycle each
            reach = Signal(33)
            m.d.sync += reach.eq(hdr.addr.offset + access_len)
            fits = reach <= space_size
        if groups:
            groups_short = Signal()
            groups_bad = Signal()
            groups_ragged = Signal()              # the payload ends inside a group
            m.d.sync += [groups_short.eq(hdr.len < 3),
                         groups_bad.eq((g_width == 0) | (g_width > g_group)),
                         groups_ragged.eq(rx_lane != 0)]
        m.d.sync += [
            in_bounds.eq(space_ok & fits),
            program_ok.eq((hdr.addr.space == Space.PROGRAM)
                          & (hdr.addr.offset < self.space_sizes[Space.PROGRAM])),
            len_zero.eq(hdr.len == 0),
            len_four.eq(hdr.len == 4),
            arg_zero.eq(arg == 0),
            arg_too_long.eq(arg > self.max_payload),
            same_seq.eq(last_seq == hdr.seq),
        ]

        # the payload's last byte: a payload is received only when hdr.len <= max_payload,
        # so cnt's width only; a register but with compact_status (hdr.len is complete
        # in LENGTH, a cycle before the payload's first byte)
        if self.compact_status:
            last_byte = (hdr.len[:len(cnt)] - 1)[:len(cnt)]
            payload_last = cnt == last_byte
        else:
            last_byte = Signal.like(cnt)
            m.d.sync += last_byte.eq(hdr.len - 1)
            # cnt == last_byte in PAYLOAD as a register, set a byte ahead (in LENGTH for
            # the first): the compare and the state's decoding were six LUTs into cnt
            payload_bits = self.max_payload.bit_length()
            payload_last = Signal()
            before_last = Signal(payload_bits)
            m.d.sync += before_last.eq(hdr.len - 2)

        # How HEADER, LENGTH and CRC end, in flags but with compact_status, so that the
        # state's next value waits for flags and handshakes only (cnt's and the length's
        # compares were four LUTs and more into the state register).
        if self.compact_status:
            header_end = cnt[:4] == _HEADER_BYTES - 1
            crc_end = cnt[:2] == _CRC_BYTES - 1
            too_long = hdr.len > self.max_payload
            no_payload = hdr.len == 0
        else:
            # the byte HEADER or CRC takes is its last: set a byte ahead, clear from HUNT
            # on (and after the header's last byte, for CRC)
            rx_last = Signal()
            header_end = crc_end = rx_last
            # hdr.len's compares for LENGTH, in the cycle before: the one that takes the
            # header's last byte, the length's top byte (on i.payload)
            too_long = Signal()
            no_payload = Signal()
            m.d.sync += [
                too_long.eq((i.payload != 0) | (hdr.len[:24] > self.max_payload)),
                no_payload.eq((i.payload == 0) & (hdr.len[:24] == 0)),
            ]

        # idle == timeout - 1, but with compact_status a register kept with idle (which
        # only restarts at 0 or steps by one): the timeout starts from a flip-flop
        timed_out = idle == self.timeout - 1 if self.compact_status else Signal()

        def restart_idle():
            m.d.sync += idle.eq(0)
            if not self.compact_status:
                m.d.sync += timed_out.eq(0)            # the timeout is at least 2

        def receive(on_byte, on_timeout):
            """Accept a byte per cycle; ``on_timeout`` after ``timeout`` idle cycles."""
            m.d.comb += i.ready.eq(crc_free)
            with m.If(i.valid & crc_free if self.compact_status else i.valid):
                restart_idle()
                on_byte()
            with m.Elif(timed_out):
                restart_idle()
                on_timeout()
            with m.Else():
                m.d.sync += idle.eq(idle + 1)
                if not self.compact_status:
                    m.d.sync += timed_out.eq(idle == self.timeout - 2)

        def feed_crc(byte):
            m.d.comb += crc.en.eq(1)
            if self.compact_status:                   # otherwise wired below
                m.d.comb += crc.data.eq(byte)

        # Bytes out. compact_status: o_stream and the CRC take the byte as it is picked.
        # Otherwise the byte picked (a 75-way mux for STATUS) goes into a register first,
        # with what the CRC does with it and whether it is its state's last, so that
        # o_stream, the CRC and the state's end are driven from registers: a cycle more
        # a byte (a UART byte takes ~80).
        if not self.compact_status:
            tx_valid = Signal()
            tx_data = Signal(8)
            tx_first = Signal()               # the sync byte: the CRC restarts
            tx_covered = Signal()             # the CRC takes the byte
            tx_last = Signal()
            # the CRC's inputs from registers, not from the state's decoding: the byte
            # sent or received, and a restart all through HUNT (`hunting` is high there)
            hunting = Signal(init=1)
            m.d.comb += [
                o.valid.eq(tx_valid), o.payload.eq(tx_data),
                crc.data.eq(Mux(tx_covered, tx_data, i.payload)),
                crc.start.eq(hunting | tx_valid & o.ready & tx_first),
            ]
            # cnt's low bits while a response goes out, for the byte muxes, in a register
            # of their own (cnt, read all over the link, was four LUTs before tx_data):
            # the send states step cnt with each byte sent and clear it after their last,
            # and cnt is 0 on the way into TX_HEADER
            tx_index = Signal(6)
            with m.If(tx_valid & o.ready):
                m.d.sync += [tx_valid.eq(0), tx_first.eq(0), tx_covered.eq(0),
                             tx_index.eq(Mux(tx_last, 0, tx_index + 1))]
                m.d.comb += crc.en.eq(tx_covered)
            # The STATUS payload's byte `cnt` in two registered steps (its 8-byte group,
            # then the byte), `settled` once cnt has held still for both: the 48-way
            # byte mux in front of tx_data was the link's longest path.
            # The byte is picked by a copy of tx_index's low bits a cycle late, which
            # is when status_group has caught up with tx_index: a register of its own
            # next to the pick (tx_index, read all over the link, was five LUTs and two
            # long routes before status_byte).
            status_group = Signal(64)
            status_at = Signal(3)
            status_byte = Signal(8)
            settle = Signal(range(3))
            m.d.sync += [
                # (a NAK's byte in place of the group: it holds still from before the
                # header, whose bytes restart `settle`)
                status_group.eq(Mux(resp_nak, nak_byte.replicate(8),
                                    resp_data.as_value().word_select(tx_index[3:6], 64))),
                status_at.eq(tx_index[:3]),
                status_byte.eq(status_group.word_select(status_at, 8)),
                settle.eq(Mux(settle == 2, 2, settle + 1)),
            ]
            with m.If(tx_valid & o.ready):
                m.d.sync += settle.eq(0)
            settled = settle == 2

        def send(byte, last, *, first=None, covered=True):
            """Offer ``byte`` to o_stream: whether it goes out this cycle, and whether it
            is the state's ``last``. ``first``: the CRC restarts on the byte, else takes it
            if ``covered``."""
            if not self.compact_status:
                with m.If(~tx_valid):
                    m.d.sync += [tx_data.eq(byte), tx_valid.eq(1), tx_last.eq(last),
                                 tx_first.eq(0 if first is None else first),
                                 tx_covered.eq(covered if first is None else ~first)]
                return tx_valid & o.ready, tx_last
            m.d.comb += [o.valid.eq(crc_free), o.payload.eq(byte)]
            sent = o.ready & crc_free
            with m.If(sent):
                if first is not None:
                    with m.If(first):
                        m.d.comb += crc.start.eq(1)
                    with m.Else():
                        feed_crc(o.payload)
                elif covered:
                    feed_crc(o.payload)
            return sent, last

        # the response payload's last byte index, set with its length (the send states
        # compare cnt with a register, not with a subtract); cnt stays under resp_len
        # there, so the compare is resp_len's width
        resp_last = resp_len - 1 if self.compact_status else Signal.like(resp_len)
        tx_cnt = cnt[:len(resp_len)]
        # the payload's byte to send is its last: a register but with compact_status
        # (cnt, read all over the link, was four LUTs before tx_last), as cnt holds still
        # for two cycles at least before TX_PAYLOAD (`settled`) or READ_SEND loads a byte
        if self.compact_status:
            payload_end = tx_cnt == resp_last[:len(tx_cnt)]
        else:
            payload_end = Signal()
            m.d.sync += payload_end.eq(tx_cnt == resp_last)
        # cnt's bits that pick the header's or the CRC's byte to send
        tx_at = cnt[:4] if self.compact_status else tx_index[:4]
        # TX_HEADER's end is a response without payload: a register but with
        # compact_status (resp_len holds still all through TX_HEADER, two cycles a byte at
        # least)
        resp_empty = resp_len == 0 if self.compact_status else Signal()
        if not self.compact_status:
            m.d.sync += resp_empty.eq(resp_len == 0)

        def load_response(reply, length, *, memory=False):
            """The response's reply, payload length, and source (READ data if `memory`)."""
            m.d.sync += [resp_nak.eq(reply == Reply.NAK), resp_len.eq(length),
                         from_memory.eq(memory)]
            if not self.compact_status:
                m.d.sync += resp_last.eq(length - 1)

        def respond(reply, length, *, memory=False):
            load_response(reply, length, memory=memory)
            m.d.sync += cnt.eq(0)
            m.next = "TX_HEADER"

        def send_nak(code):
            m.d.sync += nak_byte.eq(code)
            respond(Reply.NAK, 1)

        # The accelerator decodes bus.write.valid, bus.read_addr.valid and
        # bus.read_data.ready into its memories' enables. Each is high in one state, and
        # (but with compact_status) comes from a register that goes high on the way into
        # that state and low on the way out, not from the state's decoding.
        strobes = {"write": bus.write.valid, "read_addr": bus.read_addr.valid,
                   "read_data": bus.read_data.ready}
        held = {} if self.compact_status else {
            name: Signal(name=f"{name}_strobe") for name in strobes}
        m.d.comb += [strobes[name].eq(reg) for name, reg in held.items()]

        def strobe(name, value=None):
            """In the state that drives port `name` (``value`` None), or on the way into
            (1) or out of (0) it."""
            if self.compact_status and value is None:
                m.d.comb += strobes[name].eq(1)
            elif not self.compact_status and value is not None:
                m.d.sync += held[name].eq(value)

        def drain_then_nak(code):
            # (in LENGTH and EXECUTE, where idle is 0: the frame's last byte restarted it,
            # so that the length's and the CRC's checks do not reach the idle counter)
            m.d.sync += nak_code.eq(code)
            m.next = "DRAIN"

        def truncated():
            send_nak(NakCode.TRUNCATED)

        # The answer to a frame whose CRC verified: each command's own checks, then the
        # address's, then whether a run is going on, in the protocol's order.
        # compact_status: EXECUTE answers at once. Otherwise the answer as if no run
        # were going on (the verdict) goes into registers every cycle, from the checks'
        # registers: it is final in CHECK, one register after the checks (the bounds
        # check is final three cycles after the payload's last byte, CHECK four). CHECK
        # (`in_check`, a register, not the state's decoding) loads it into the
        # response's registers (read from TX_HEADER on; a bad CRC's NAK loads them
        # again); where it needs the accelerator idle and a run goes on as EXECUTE sees
        # it, `busy_nak` has EXECUTE load NAK BUSY over it. `busy_nak`, `to_commit` and
        # `run_acked` (read in EXECUTE only) and the start and reset pulses (with the
        # CRC's verdict) are a LUT4 each of registers (and bus.done); in EXECUTE only the
        # CRC's verdict and `to_commit` pick the next state. The command's decoding, the
        # checks and `running` were six LUTs into the response registers; then bus.done
        # (late: a route across the die) was three, and four into the pulses, in CHECK's
        # decoding.
        early = not self.compact_status
        if early:
            to_commit = Signal()
            run_acked = Signal()                  # last_was_run after EXECUTE
            busy_nak = Signal()                   # high in EXECUTE: NAK BUSY instead
            verdict_nak = Signal()
            verdict_code = Signal(NakCode, init=NakCode.BAD_CRC)
            verdict_len = Signal.like(resp_len)
            verdict_last = Signal.like(resp_last)
            verdict_memory = Signal()
            verdict_commit = Signal()
            verdict_idle = Signal()               # NAK BUSY instead if a run goes on
            verdict_run = Signal()                # run_acked
            verdict_start = Signal()
            verdict_reset = Signal()
            run_acked_to = verdict_run
            # a READ's last byte's index, a register (arg holds still from the CRC state
            # on): its subtract was a carry chain after the decoding into verdict_last
            arg_last = Signal.like(resp_last)
            m.d.sync += arg_last.eq(arg - 1)
            # `crc_verified` is high in CHECK where the frame's CRC verified (its register
            # at CRC32_RESIDUE after the last byte), set from the cycle that takes that
            # byte, on the register before it and the byte (i.payload): a compare of the
            # register just loaded was three LUTs before the start and reset pulses
            # (_residue_step)
            crc_verified = Signal()
            rest, index = _residue_step()
            crc_reg = ~crc.crc                    # (crc.crc is the register inverted)
            last_crc_ok = (crc_reg[8:] == rest) & ((crc_reg[:8] ^ i.payload) == index)
            # no run goes on as EXECUTE sees it: a run may end in CHECK (done, or the
            # watchdog: run_on is low), none starts
            run_over = ~run_on_check | bus.done
            m.d.sync += [
                crc_ok.eq(crc_verified),
                busy_nak.eq(in_check & verdict_idle & ~run_over),
                # (a commit is a verdict with verdict_idle)
                to_commit.eq(verdict_commit & run_over),
                run_acked.eq(verdict_run & (~verdict_idle | run_over)),
            ]
            # the pulses in EXECUTE, a copy for run_cycles' and limit's 64 flip-flops (a
            # start is a verdict with verdict_idle, a reset one without)
            start_now = copies(m, platform, crc_verified & verdict_start & run_over,
                               2, "link_start")
            reset_now = copies(m, platform, crc_verified & verdict_reset, 2, "link_reset")
        else:
            run_acked_to = last_was_run
        # a write's copy starts from this staging byte: after a WRITE_GROUPS's width and
        # group bytes
        first_byte = Mux(is_groups, 2, 0) if groups else 0

        def nak(code):
            if early:
                m.d.sync += [verdict_nak.eq(1), verdict_code.eq(code), verdict_len.eq(1),
                             verdict_last.eq(0)]
            else:
                send_nak(code)

        def ack(length, *, memory=False, last=None):
            """(`last`: length - 1, where a register has it)"""
            if early:
                m.d.sync += [verdict_len.eq(length),
                             verdict_last.eq(length - 1 if last is None else last),
                             verdict_memory.eq(memory)]
            else:
                respond(Reply.ACK, length, memory=memory)

        def commit():
            """Copy the staging RAM to memory."""
            if early:
                m.d.sync += verdict_commit.eq(1)
            else:
                if groups:
                    m.d.sync += [src.eq(first_byte), lane.eq(0), fill.eq(0)]
                m.d.sync += cnt.eq(0)
                m.next = "COMMIT_READ"

        def unless_busy(then):
            """The last check, `then` if no run goes on (if early: in CHECK)."""
            if early:
                with m.Else():
                    m.d.sync += verdict_idle.eq(1)
                    then()
            else:
                with m.Elif(running):
                    send_nak(NakCode.BUSY)
                with m.Else():
                    then()

        def answer():
            m.d.sync += run_acked_to.eq(0)
            if early:
                m.d.sync += [verdict_nak.eq(0), verdict_memory.eq(0), verdict_commit.eq(0),
                             verdict_idle.eq(0), verdict_start.eq(0), verdict_reset.eq(0)]
            with m.Switch(hdr.cmd):
                def commit_checks():
                    """After a write's own checks: the address and busy checks, then the
                    copy."""
                    with m.Elif(~in_bounds):
                        nak(NakCode.BAD_ADDRESS)
                    unless_busy(commit)

                with m.Case(Command.WRITE):
                    with m.If(len_zero):
                        nak(NakCode.BAD_LENGTH)
                    commit_checks()
                if groups:
                    with m.Case(Command.WRITE_GROUPS):
                        with m.If(groups_short):
                            nak(NakCode.BAD_LENGTH)
                        with m.Elif(groups_bad):
                            nak(NakCode.BAD_ARGUMENT)
                        with m.Elif(groups_ragged):
                            nak(NakCode.BAD_LENGTH)
                        commit_checks()
                with m.Case(Command.READ):
                    with m.If(~len_four | arg_zero | arg_too_long):
                        nak(NakCode.BAD_LENGTH)
                    with m.Elif(~in_bounds):
                        nak(NakCode.BAD_ADDRESS)
                    unless_busy(lambda: ack(arg, memory=True,
                                            last=arg_last if early else None))
                with m.Case(Command.RUN):
                    def start():
                        if early:
                            m.d.sync += verdict_start.eq(1)   # the run starts below
                        else:
                            m.d.comb += bus.start.eq(1)
                            m.d.sync += [running.eq(1), flags.eq(StatusFlag.RUNNING),
                                         run_cycles.eq(0), limit.eq(arg)]
                        m.d.sync += run_acked_to.eq(1)
                        ack(0)

                    with m.If(~len_four):
                        nak(NakCode.BAD_LENGTH)
                    with m.Elif(~program_ok):
                        nak(NakCode.BAD_ADDRESS)
                    with m.Elif(arg_zero):
                        nak(NakCode.BAD_ARGUMENT)
                    with m.Elif(last_was_run & same_seq):
                        # A resend of the RUN just acknowledged (its ACK was lost):
                        # acknowledge again, do not run twice.
                        m.d.sync += run_acked_to.eq(1)
                        ack(0)
                    unless_busy(start)
                with m.Case(Command.STATUS):
                    with m.If(~len_zero):
                        nak(NakCode.BAD_LENGTH)
                    with m.Else():
                        ack(_STATUS_BYTES)
                with m.Case(Command.RESET):
                    with m.If(~len_zero):
                        nak(NakCode.BAD_LENGTH)
                    with m.Else():
                        if early:
                            m.d.sync += verdict_reset.eq(1)   # below
                        else:
                            m.d.comb += bus.reset.eq(1)
                            m.d.sync += [running.eq(0), flags.eq(0), run_cycles.eq(0)]
                        ack(0)
                with m.Default():
                    nak(NakCode.UNKNOWN_COMMAND)

        if early:
            answer()
            m.d.sync += [in_check.eq(0), crc_verified.eq(0)]   # set on the way into CHECK

        with m.FSM(name="link"):
            with m.State("HUNT"):
                # Bytes outside a frame are line noise or the tail of a frame
                # already answered: drop them silently.
                m.d.comb += i.ready.eq(1)
                # The frame's registers start over all through HUNT, where nothing
                # reads them, so only the state and the CRC wait for the sync byte's
                # compare. cnt is 0 already (TX_CRC leaves it so); the header's other
                # fields are all written before they are read, and the address holds
                # still for `program` after a RUN's start.
                restart_idle()
                m.d.sync += [hdr.seq.eq(0), arg.eq(0)]   # a truncated header's NAK: seq 0
                if not self.compact_status:
                    m.d.sync += rx_last.eq(0)
                if groups:
                    m.d.sync += [g_width.eq(1), g_group.eq(1), rx_lane.eq(0), total.eq(0)]
                with m.If(i.valid & (i.payload == SYNC)):
                    if self.compact_status:
                        m.d.comb += crc.start.eq(1)
                    else:
                        m.d.sync += hunting.eq(0)
                    m.next = "HEADER"

            with m.State("HEADER"):
                def header_byte():
                    feed_crc(i.payload)
                    m.d.sync += [hdr.as_value().word_select(cnt[:4], 8).eq(i.payload),
                                 cnt.eq(cnt + 1)]
                    if not self.compact_status:
                        m.d.sync += rx_last.eq(cnt[:4] == _HEADER_BYTES - 2)
                    with m.If(header_end):
                        m.next = "LENGTH"
                receive(header_byte, truncated)

            with m.State("LENGTH"):
                m.d.sync += cnt.eq(0)
                if not self.compact_status:
                    m.d.sync += payload_last.eq(hdr.len[:payload_bits] == 1)
                if groups:
                    m.d.sync += [at_width.eq(is_groups), at_group.eq(0)]
                # A length the staging RAM cannot hold cannot be received; the
                # frame's end is unknown, so wait for the line to go quiet.
                with m.If(too_long):
                    drain_then_nak(NakCode.TOO_LONG)
                with m.Elif(no_payload):
                    m.next = "CRC"
                with m.Else():
                    m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                def payload_byte():
                    feed_crc(i.payload)
                    m.d.comb += [stage_w.addr.eq(cnt), stage_w.en.eq(1)]
                    if not write_late:
                        m.d.comb += stage_w.data.eq(i.payload)
                    m.d.sync += [arg.eq(Cat(arg[8:], i.payload)), cnt.eq(cnt + 1)]
                    if not self.compact_status:
                        m.d.sync += payload_last.eq(cnt[:payload_bits] == before_last)
                    if groups:
                        m.d.sync += [at_width.eq(0), at_group.eq(at_width)]
                        with m.If(at_width):
                            m.d.sync += g_width.eq(i.payload)
                        with m.Elif(at_group):
                            m.d.sync += g_group.eq(i.payload)
                        with m.Elif(rx_lane == width_last):
                            m.d.sync += [rx_lane.eq(0), total.eq(total + g_group)]
                        with m.Else():
                            m.d.sync += rx_lane.eq(rx_lane + 1)
                    with m.If(payload_last):
                        m.d.sync += cnt.eq(0)
                        m.next = "CRC"
                receive(payload_byte, truncated)

            with m.State("CRC"):
                def crc_byte():
                    feed_crc(i.payload)
                    m.d.sync += cnt.eq(cnt + 1)
                    if not self.compact_status:
                        m.d.sync += rx_last.eq(cnt[:2] == _CRC_BYTES - 2)
                    with m.If(crc_end):
                        if not self.compact_status:
                            m.d.sync += [in_check.eq(1), crc_verified.eq(last_crc_ok)]
                        m.next = "CHECK"
                receive(crc_byte, truncated)

            with m.State("DRAIN"):
                receive(lambda: None, lambda: send_nak(nak_code))

            with m.State("CHECK"):
                # The CRC's last byte landed at the edge before: its verdict into a
                # register, so EXECUTE starts from flip-flops only (without
                # compact_status, on `in_check`: below).
                if self.compact_status:
                    with m.If(crc_free):
                        m.d.sync += crc_ok.eq(crc.residue_ok)
                        m.next = "EXECUTE"
                else:
                    m.next = "EXECUTE"

            with m.State("EXECUTE"):
                if early:
                    # every way out starts its count at 0 (DRAIN uses none), so cnt does
                    # not wait for the command's decoding
                    m.d.sync += cnt.eq(0)
                with m.If(~crc_ok):
                    drain_then_nak(NakCode.BAD_CRC)
                with m.Else():
                    m.d.sync += last_seq.eq(hdr.seq)
                    if early:
                        m.d.sync += last_was_run.eq(run_acked)
                        with m.If(to_commit):
                            m.next = "COMMIT_READ"
                        with m.Else():
                            m.next = "TX_HEADER"
                    else:
                        answer()

            # WRITE commit: the staging RAM reads `src` in COMMIT_READ and has it in its
            # output register (the block's own on an ECP5: hw.bram) from COMMIT_WRITE
            # on, before the memories' write muxes (`src` holds still from COMMIT_READ
            # to COMMIT_WRITE's handshake). The memory address is a
            # register (hdr.addr.offset + cnt of the cycle before), so the memories'
            # address and enable decoding starts from flip-flops; cnt holds still for a
            # cycle (COMMIT_READ, READ_ADDR) before every use. `cnt` counts the bytes
            # written, `src` the staging byte to write next; in a group's zero fill
            # (`fill`) the byte written is 0 and `src` stays.
            m.d.comb += stage_r.addr.eq(src)
            offset = Signal(32)
            m.d.sync += offset.eq(hdr.addr.offset + cnt)
            stage_data = Mux(fill, 0, stage_r.q) if groups else stage_r.q
            # the last byte written (a register but with compact_status, as cnt holds
            # still from COMMIT_READ to COMMIT_WRITE)
            at_last = cnt == (total_last if groups else last_byte)
            if self.compact_status:
                write_last = at_last
            else:
                write_last = Signal()
                m.d.sync += write_last.eq(at_last)
            # Payloads do not depend on the state (only `valid` does), so the memories'
            # address decoding does not wait for the state decoding.
            m.d.comb += [
                bus.write.payload.addr.space.eq(hdr.addr.space),
                bus.write.payload.addr.offset.eq(offset),
                bus.write.payload.data.eq(stage_data),
                bus.read_addr.payload.space.eq(hdr.addr.space),
                bus.read_addr.payload.offset.eq(offset),
            ]
            with m.State("COMMIT_READ"):
                m.next = "COMMIT_LATCH"

            with m.State("COMMIT_LATCH"):
                strobe("write", 1)
                m.next = "COMMIT_WRITE"

            with m.State("COMMIT_WRITE"):
                strobe("write")
                with m.If(bus.write.ready):
                    strobe("write", 0)
                    m.d.sync += cnt.eq(cnt + 1)
                    if groups:
                        with m.If(~fill):
                            m.d.sync += src.eq(src + 1)
                        with m.If(lane == group_last):
                            m.d.sync += [lane.eq(0), fill.eq(0)]
                        with m.Else():
                            m.d.sync += [lane.eq(lane + 1),
                                         fill.eq(fill | (lane == width_last))]
                    m.next = "COMMIT_READ"
                    with m.If(write_last):
                        respond(Reply.ACK, 0)

            # Response: header, payload, CRC; the CRC covers all but the sync byte.
            # A NAK answers with address 0, an ACK with the frame's own (the header holds
            # still until the response is sent): no copy.
            resp_addr = Mux(resp_nak, 0, hdr.addr.as_value())
            header_bytes = Cat(Const(SYNC, 8), resp_cmd, hdr.seq, resp_addr,
                               resp_len.as_unsigned(), Const(0, 32 - len(resp_len)))

            with m.State("TX_HEADER"):
                # (cnt runs 0 to _HEADER_BYTES here, to _CRC_BYTES - 1 in TX_CRC: the
                # compares read the bits it uses)
                sent, last = send(header_bytes.word_select(tx_at, 8),
                                  tx_at == _HEADER_BYTES, first=tx_at == 0)
                with m.If(sent):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(last):
                        m.d.sync += cnt.eq(0)
                        with m.If(resp_empty):
                            m.next = "TX_CRC"
                        with m.Elif(from_memory):
                            m.next = "READ_ADDR"
                        with m.Else():
                            m.next = "TX_PAYLOAD"

            with m.State("TX_PAYLOAD"):
                if self.compact_status:
                    sent, last = send(Mux(resp_nak, nak_byte,
                                          resp_data.as_value().word_select(cnt[:6], 8)),
                                      payload_end)
                else:
                    with m.If(settled):
                        sent, last = send(status_byte, payload_end)
                with m.If(sent):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(last):
                        m.d.sync += cnt.eq(0)
                        m.next = "TX_CRC"

            with m.State("READ_ADDR"):
                strobe("read_addr", 1)
                m.next = "READ_REQUEST"

            with m.State("READ_REQUEST"):
                strobe("read_addr")
                with m.If(bus.read_addr.ready):
                    strobe("read_addr", 0)
                    strobe("read_data", 1)
                    m.next = "READ_WAIT"

            with m.State("READ_WAIT"):
                strobe("read_data")
                with m.If(bus.read_data.valid):
                    strobe("read_data", 0)
                    m.d.sync += read_byte.eq(bus.read_data.payload)
                    m.next = "READ_SEND"

            with m.State("READ_SEND"):
                sent, last = send(read_byte, payload_end)
                with m.If(sent):
                    m.d.sync += cnt.eq(cnt + 1)
                    m.next = "READ_ADDR"
                    with m.If(last):
                        m.d.sync += cnt.eq(0)
                        m.next = "TX_CRC"

            with m.State("TX_CRC"):
                sent, last = send(crc.crc.word_select(tx_at[:2], 8),
                                  tx_at[:2] == _CRC_BYTES - 1, covered=False)
                with m.If(sent):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(last):
                        m.d.sync += cnt.eq(0)
                        if not self.compact_status:
                            m.d.sync += hunting.eq(1)
                        m.next = "HUNT"

        if early:
            # CHECK: the verdict into the response's registers, then in EXECUTE NAK BUSY
            # over it where a run goes on
            with m.If(in_check):
                m.d.sync += [nak_byte.eq(verdict_code), resp_nak.eq(verdict_nak),
                             resp_len.eq(verdict_len), resp_last.eq(verdict_last),
                             from_memory.eq(verdict_memory)]
                if groups:
                    m.d.sync += [src.eq(first_byte), lane.eq(0), fill.eq(0)]
            with m.If(busy_nak):
                m.d.sync += nak_byte.eq(NakCode.BUSY)
                load_response(Reply.NAK, 1)
            # EXECUTE's RUN and RESET on run control (the FSM answers them)
            with m.If(start_now[0]):
                m.d.comb += [bus.start.eq(1), run_on_next.eq(1)]
                m.d.sync += [running.eq(1), flags.eq(StatusFlag.RUNNING),
                             last_step.eq(arg_one)]
            with m.If(start_now[1]):
                m.d.sync += [run_cycles.eq(0), limit.eq(arg - 2)]
            with m.If(reset_now[0]):
                m.d.comb += [bus.reset.eq(1), run_on_next.eq(0)]
                m.d.sync += [running.eq(0), flags.eq(0)]
            with m.If(reset_now[1]):
                m.d.sync += run_cycles.eq(0)
        return m
