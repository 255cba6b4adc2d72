"""cocotb module: serve the simulated `hw.Accelerator` over TCP with the link protocol.

Runs inside the simulator (Verilator or Icarus) that `host.rtl.RtlSimulation` launches.
It listens on 127.0.0.1 (port 0: the OS picks; the port is written to
``$SAMOYED_RTL_PORT_FILE``), accepts one connection and moves bytes between it and the
design's ``i_stream`` / ``o_stream``, so the host talks to the RTL exactly as to a board
(`board:socket://...`). The design runs free while Python waits. On Verilator the
simulation top has byte buffers on both streams (``$SAMOYED_RTL_BUFFERS``,
host.rtl.CLOCK_WRAPPER): Python moves a whole frame per wake-up (`BufferedPump`). On
Icarus, bytes are driven one per cycle from Python while there are bytes to move
(`LinkPump`). Otherwise the simulator advances in chunks of ``POLL_CYCLES`` between
socket polls, and stops advancing while the design is idle and the host silent.

``$SAMOYED_RTL_BACKPRESSURE=SEED`` inserts gaps in the input stream and ``ready`` drops
on the output stream (random from Python, or LFSR-timed in the buffered top); the
integration tests set it.
"""

import os
import random
import select
import socket

import cocotb
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer

from sim.tb import TB

POLL_CYCLES = 256       # cycles between socket polls while the design answers or idles
RUN_CYCLES = 4096       # ... while it runs a program (the host polls STATUS meanwhile)
IDLE_SECONDS = 0.005


def _high(signal):
    """The signal is a resolved 1 (X and Z count as low)."""
    value = signal.value
    return value.is_resolvable and bool(value)


class LinkPump(TB):
    """Byte pump between a socket and the design's link streams."""

    def __init__(self, dut, conn, rng=None, clock_running=True):
        super().__init__(dut, clock_running=clock_running)   # `serve` started the clock
        self.conn = conn
        self.rng = rng
        self.inbox = bytearray()
        self.closed = False
        self.sent = 0

    def _recv(self, timeout=0.0):
        if self.closed:
            return
        readable, _, _ = select.select([self.conn], [], [], timeout)
        if readable:
            try:
                data = self.conn.recv(1 << 16)
            except OSError:
                data = b""
            if data:
                self.inbox += data
            else:
                self.closed = True

    async def _idle(self, quiet):
        """Idle design, silent host: poll the socket (blocking a little once `quiet` polls
        found nothing) and let a short stretch of time pass when nothing came (the link's
        inter-byte timeout still runs). The new count of quiet polls."""
        self._recv(IDLE_SECONDS if quiet >= 4 else 0)
        if self.inbox:
            return 0
        await Timer(POLL_CYCLES * self.period_ns, unit="ns")
        return quiet + 1

    async def drive(self):
        """Feed `inbox` into i_stream, one byte per cycle (with gaps under backpressure)."""
        dut = self.dut
        valid, payload, ready = dut.i_stream__valid, dut.i_stream__payload, dut.i_stream__ready
        out_valid, running = dut.o_stream__valid, dut.running
        quiet = 0
        while not self.closed or self.inbox:
            if not self.inbox:
                valid.value = 0
                # Let the design run free while it computes or answers; while it is
                # idle and the host silent, wait on the socket between short advances
                # (time still passes, so the link's inter-byte timeout works).
                if _high(running) or _high(out_valid):
                    chunk = RUN_CYCLES if _high(running) else POLL_CYCLES
                    await First(Timer(chunk * self.period_ns, unit="ns"),
                                RisingEdge(out_valid))
                    self._recv()
                    quiet = 0
                else:
                    quiet = await self._idle(quiet)
                continue
            await FallingEdge(self.clk)
            # Inputs set at a falling edge are sampled by the next rising edge; `ready`
            # is a registered output, so its value now is the value at that edge.
            gap = self.rng is not None and self.rng.random() < 0.2
            if gap:
                valid.value = 0
                continue
            valid.value = 1
            payload.value = self.inbox[0]
            if _high(ready):
                del self.inbox[0]
                if not self.inbox:
                    self._recv()
                    if not self.inbox:
                        # Writes happen at falling edges only: a write in the time step
                        # of a rising edge races the flops in Icarus.
                        await FallingEdge(self.clk)
                        valid.value = 0

    async def collect(self):
        """Send every o_stream byte to the socket (with random ready drops)."""
        dut = self.dut
        valid, payload, ready = dut.o_stream__valid, dut.o_stream__payload, dut.o_stream__ready
        ready.value = 1
        out = bytearray()
        while True:
            await FallingEdge(self.clk)
            if not _high(valid):
                if out:
                    self._send(out)
                    out.clear()
                ready.value = 1
                await RisingEdge(valid)
                continue
            take = self.rng is None or self.rng.random() >= 0.2
            ready.value = int(take)
            if take:
                out.append(int(payload.value))
                if len(out) >= 4096:
                    self._send(out)
                    out.clear()

    def _send(self, data):
        try:
            self.conn.sendall(bytes(data))
            self.sent += len(data)
        except OSError:
            self.closed = True


class BufferedPump(LinkPump):
    """Byte pump through the simulation top's byte buffers (host.rtl.CLOCK_WRAPPER): a
    whole frame goes into ``rx_buf`` in one wake-up of Python and the design takes it
    one byte per cycle on its own; output bytes collect in ``tx_buf`` and are read in
    bursts. Python wakes when output starts, every ``RUN_CYCLES`` while the design runs,
    or when it may have taken the input, never per byte."""

    def __init__(self, dut, conn, rx_bytes, tx_bytes, gaps, clock_running=True):
        super().__init__(dut, conn, None, clock_running=clock_running)
        self.rx_bytes, self.tx_bytes = rx_bytes, tx_bytes
        self.rx_total = self.tx_done = 0
        self.mirror = bytearray(rx_bytes)       # what rx_buf holds, for partial words
        dut.gaps.value = int(gaps)
        self._sync_counters()

    def _sync_counters(self):
        """Continue from wherever the design's counters are (a previous connection)."""
        dut = self.dut
        self.rx_total = int(dut.rx_count.value)
        self.tx_done = int(dut.tx_count.value)
        dut.rx_limit.value = self.rx_total
        dut.tx_read.value = self.tx_done
        dut.tx_limit.value = (self.tx_done + self.tx_bytes) & 0xFFFFFFFF

    def _fill(self):
        """Move as much of `inbox` into rx_buf as fits; return how many bytes."""
        taken = int(self.dut.rx_count.value)
        room = self.rx_bytes - ((self.rx_total - taken) & 0xFFFFFFFF)
        n = min(room, len(self.inbox))
        if n <= 0:
            return 0
        start = self.rx_total
        for i in range(n):
            self.mirror[(start + i) % self.rx_bytes] = self.inbox[i]
        del self.inbox[:n]
        buf, words = self.dut.rx_buf, self.rx_bytes // 4
        for word in range(start // 4, (start + n - 1) // 4 + 1):
            w = word % words
            buf[w].value = int.from_bytes(self.mirror[4 * w:4 * w + 4], "little")
        self.rx_total = (start + n) & 0xFFFFFFFF
        self.dut.rx_limit.value = self.rx_total
        return n

    def _drain(self):
        """Send whatever the design has put into tx_buf."""
        count = int(self.dut.tx_count.value)
        n = (count - self.tx_done) & 0xFFFFFFFF
        if not n:
            return 0
        buf = self.dut.tx_buf
        out = bytes(int(buf[(self.tx_done + i) % self.tx_bytes].value) for i in range(n))
        self.tx_done = count
        self.dut.tx_read.value = count
        self.dut.tx_limit.value = (count + self.tx_bytes) & 0xFFFFFFFF
        self._send(out)
        return n

    async def drive(self):
        dut = self.dut
        quiet = 0
        while True:
            self._recv()
            self._fill()
            self._drain()
            pending = (self.rx_total - int(dut.rx_count.value)) & 0xFFFFFFFF
            if self.closed and not self.inbox and not pending:
                return
            if _high(dut.running) or pending or _high(dut.tx_pending):
                # Let the design run: until its output starts, or long enough to take the
                # pending input (twice its length: gaps), or a run chunk.
                chunk = RUN_CYCLES if _high(dut.running) else max(POLL_CYCLES, 2 * pending)
                woke = await First(Timer(chunk * self.period_ns, unit="ns"),
                                   RisingEdge(dut.tx_pending))
                if not isinstance(woke, Timer):
                    # an answer is starting: let its burst arrive before reading it
                    await Timer(POLL_CYCLES * self.period_ns, unit="ns")
                quiet = 0
            else:
                quiet = await self._idle(quiet)


def _accept(server, timeout, stop_file, parent, log):
    """The next client, or None when asked to stop, when the process that started the
    simulator has gone (no orphaned simulators), or after `timeout` seconds."""
    waited = 0.0
    while True:
        if stop_file and os.path.exists(stop_file):
            return None
        if os.getppid() != parent:
            log.info("the launching process has gone; ending the simulation")
            return None
        try:
            return server.accept()[0]
        except socket.timeout:
            waited += 1.0
            if timeout is not None and waited >= timeout:
                log.info("no client within %.0f s; ending the simulation", timeout)
                return None


@cocotb.test()
async def serve(dut):
    """Serve `$SAMOYED_RTL_CONNECTIONS` connections (default 1) one after another, then
    end the simulation. The design keeps its memories between connections."""
    port_file = os.environ["SAMOYED_RTL_PORT_FILE"]
    seed = os.environ.get("SAMOYED_RTL_BACKPRESSURE")
    rng = random.Random(int(seed)) if seed else None
    # The Verilator top has byte buffers on the link streams (host.rtl.CLOCK_WRAPPER).
    buffers = tuple(int(v) for v in os.environ.get("SAMOYED_RTL_BUFFERS", "").split(",")
                    if v)
    if buffers:
        dut.gaps.value = 0
        for name in ("rx_limit", "tx_read", "tx_limit"):   # each pump sets them
            getattr(dut, name).value = 0
    else:
        dut.i_stream__valid.value = 0
        dut.o_stream__ready.value = 1
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(os.environ.get("SAMOYED_RTL_PORT", "0"))))
    server.listen(1)
    try:
        with open(port_file + ".pid", "w") as f:      # who to stop if the stop file fails
            f.write(str(os.getpid()))
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(server.getsockname()[1]))
        os.replace(tmp, port_file)
        timeout = os.environ.get("SAMOYED_RTL_ACCEPT_TIMEOUT", "60")
        timeout = float(timeout) if timeout else None
        server.settimeout(1.0)
        parent = os.getppid()
        connections = int(os.environ.get("SAMOYED_RTL_CONNECTIONS", "1"))
        # The simulation top (host.rtl.CLOCK_WRAPPER) toggles its own clock.
        internal = bool(os.environ.get("SAMOYED_RTL_INTERNAL_CLOCK"))
        tb = TB(dut, clock_running=internal)
        await tb.start()
        for name in ("running", "tx_pending") if buffers else \
                ("running", "o_stream__valid", "i_stream__ready"):
            value = getattr(dut, name).value
            if not value.is_resolvable:
                tb.log.warning("%s is %s after reset", name, value)
        stop_file = os.environ.get("SAMOYED_RTL_STOP_FILE")
        for _ in range(connections):
            conn = _accept(server, timeout, stop_file, parent, tb.log)
            if conn is None:
                break
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if buffers:
                pump = BufferedPump(dut, conn, *buffers, gaps=rng is not None,
                                    clock_running=internal)
                await pump.drive()
            else:
                pump = LinkPump(dut, conn, rng, clock_running=internal)
                collector = cocotb.start_soon(pump.collect())
                await pump.drive()
                collector.cancel()
            conn.close()
    finally:
        server.close()
