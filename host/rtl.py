"""Run `hw.Accelerator` in an RTL simulator and talk to it like a board.

`RtlSimulation(config, simulator)` converts the accelerator to Verilog, builds it with
`sim.runners` (Verilator or Icarus; one build per design, cached on disk across
sessions), starts the simulator in a background thread with the cocotb module
`sim.rtl_server`, and gives a `socket://127.0.0.1:PORT` URL that speaks the framed link
protocol. `host.backends.board.BoardBackend` connects to it unchanged, so the RTL is
driven by exactly the bytes a real board gets.

`check_program` refuses, before anything is built or sent, a program or config that
this RTL cannot run, naming the descriptor and the way out.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import threading
import time
from pathlib import Path

from hw import AcceleratorConfig, ConfigError

from .errors import BackendError

log = logging.getLogger(__name__)

SIMULATORS = ("verilator", "icarus")
TOPLEVEL = "accelerator"
SIM_LINK_TIMEOUT = 20_000        # cycles: the simulated link's inter-byte timeout
START_TIMEOUT = 600.0            # seconds for the simulator to start listening


def check_program(program, config: AcceleratorConfig) -> None:
    """Raise BackendError if the RTL cannot run `program` (a compiler.program.Program)."""
    from hw import isa
    from hw.accelerator import check_config
    from hw.isa import Opcode
    from sim.machine import conv_size

    try:
        check_config(config)
    except ConfigError as error:
        raise BackendError(f"the RTL cannot be built for config {config.label}: {error}") \
            from None
    names = list(getattr(program, "layer_names", []))
    for index, d in enumerate(isa.unpack_program(program.image.prg)):
        what = f"layer {names[index]}" if index < len(names) else "no layer name"
        if d.op is Opcode.END:
            break
        if d.op is not Opcode.CONV and config.rows != config.cols:
            raise BackendError(
                f"descriptor {index} ({what}) is {d.op.name}: the RTL runs it on square "
                f"arrays only (one channel group per output tile), not {config.label}")
        if d.op is Opcode.AVGPOOL and max(d.in_h, d.in_w) > 15:
            raise BackendError(
                f"descriptor {index} ({what}) averages a {d.in_h}x{d.in_w} input: the RTL's "
                "global pool takes at most 15x15 (the feeder's tap fields have 4 bits)")
        if d.op is Opcode.CONV and d.pool_k > 1 and config.standalone_pool:
            raise BackendError(
                f"descriptor {index} ({what}) max-pools on write (pool_k={d.pool_k}); the "
                f"{config.label} config has no pool-on-write (standalone_pool): compile the "
                "network for this config, which gives the pool a MAXPOOL descriptor")
        if d.op is Opcode.CONV and (d.in_c == 0 or d.out_c == 0):
            raise BackendError(
                f"descriptor {index} ({what}) is a CONV of in_c={d.in_c} to "
                f"out_c={d.out_c} channels: a convolution needs at least one of each "
                "(the compiler never emits this; the program is corrupt)")
        conv_h, conv_w = conv_size(d) if d.op is Opcode.CONV else (d.out_h, d.out_w)
        tile = d.tile_px or (1 if d.op is Opcode.AVGPOOL else conv_h * conv_w)
        if tile > config.acc_depth:
            raise BackendError(
                f"descriptor {index} ({what}) accumulates pixel tiles of {tile} pixels; the "
                f"{config.label} config's accumulators hold {config.acc_depth} (acc_depth): "
                "compile the network for this config")
        if (d.op is Opcode.MAXPOOL and d.pool_k < 2 and config.compact_post
                and config.acc_depth == 1):
            raise BackendError(
                f"descriptor {index} ({what}) is a {d.pool_k}x{d.pool_k} MAXPOOL: the "
                f"{config.label} config's post-processor needs raw results 4 cycles apart "
                "(windows of 2x2 or more); drop the pool")
        if d.out_raw and conv_h * conv_w > 1:
            raise BackendError(
                f"descriptor {index} ({what}) writes raw int32 outputs for {conv_h * conv_w} "
                "pixels; the RTL writes them for one-pixel (linear) layers only")


CLOCK_WRAPPER = """
// Simulation top: the accelerator with its own clock, so the simulator toggles it
// without calling into Python (cocotb's GPI clock costs a callback per edge), and byte
// buffers on both link streams, so Python moves a whole frame per wake-up instead of
// waking on every byte (sim/rtl_server.py). Python writes input bytes into rx_buf
// (4 per word, little-endian) and raises rx_limit; the design takes them one per cycle
// while rx_count != rx_limit. Output bytes land in tx_buf while tx_count != tx_limit
// (Python keeps tx_limit = bytes read + TX_BYTES); tx_pending is high while any is
// unread. `gaps` inserts LFSR-timed gaps in valid (input) and ready (output).
module {top}(input rst, input gaps,
             input [31:0] rx_limit, output reg [31:0] rx_count,
             input [31:0] tx_read, input [31:0] tx_limit, output reg [31:0] tx_count,
             output tx_pending,
             output running, output done, output [{msb}:0] descriptor);
  reg clk = 1'b0;
  always #{half} clk = ~clk;
  reg [31:0] rx_buf [0:{rx_words}-1];
  reg [7:0] tx_buf [0:{tx_bytes}-1];
  reg [15:0] lfsr = 16'hace1;
  always @(posedge clk) lfsr <= {{lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]}};
  wire [31:0] rx_word = rx_buf[rx_count[{rx_msb}:2]];
  wire i_valid = (rx_count != rx_limit) & ~(gaps & (lfsr[2:0] == 3'd0));
  wire [7:0] i_payload = rx_word[8 * rx_count[1:0] +: 8];
  wire i_ready, o_valid;
  wire [7:0] o_payload;
  wire o_ready = (tx_count != tx_limit) & ~(gaps & (lfsr[5:3] == 3'd0));
  assign tx_pending = tx_count != tx_read;
  always @(posedge clk) begin
    if (rst) begin
      rx_count <= 32'd0;
      tx_count <= 32'd0;
    end else begin
      if (i_valid & i_ready) rx_count <= rx_count + 32'd1;
      if (o_valid & o_ready) begin
        tx_buf[tx_count[{tx_msb}:0]] <= o_payload;
        tx_count <= tx_count + 32'd1;
      end
    end
  end
  {core} core(.clk(clk), .rst(rst), .i_stream__valid(i_valid),
    .i_stream__payload(i_payload), .i_stream__ready(i_ready),
    .o_stream__valid(o_valid), .o_stream__payload(o_payload),
    .o_stream__ready(o_ready), .running(running), .done(done),
    .descriptor(descriptor));
endmodule
"""
RX_BYTES = 16384                  # the wrapper's input buffer (a K-packed fmnist frame: 12.5 KB)
TX_BYTES = 4096                   # ... and output buffer
CLOCK_PERIOD_NS = 10


@functools.lru_cache(maxsize=8)
def accelerator_verilog(config_json: str, internal_clock: bool = True) -> str:
    """Verilog of `hw.Accelerator` for a config (JSON, so the cache key is hashable),
    under a clock-generating top `TOPLEVEL`."""
    from amaranth.hdl import Shape
    from hw.accelerator import Accelerator
    from sim.runners import verilog_source
    config = AcceleratorConfig.from_json(config_json)
    if not internal_clock:
        return verilog_source(Accelerator(config, link_timeout=SIM_LINK_TIMEOUT),
                              name=TOPLEVEL)
    core = verilog_source(Accelerator(config, link_timeout=SIM_LINK_TIMEOUT),
                          name=TOPLEVEL + "_core")
    msb = Shape.cast(range(config.program_depth)).width - 1
    return core + CLOCK_WRAPPER.format(
        top=TOPLEVEL, core=TOPLEVEL + "_core", msb=msb, half=CLOCK_PERIOD_NS // 2,
        rx_words=RX_BYTES // 4, rx_msb=RX_BYTES.bit_length() - 2, tx_bytes=TX_BYTES,
        tx_msb=TX_BYTES.bit_length() - 2)


def internal_clock(simulator: str) -> bool:
    """Whether the simulation top generates its own clock (Verilator: no GPI callback per
    edge, ~1.7x faster); Icarus takes the clock from cocotb."""
    return simulator == "verilator"


def build(config: AcceleratorConfig, simulator: str = "verilator", waves: bool = False):
    """The (cached) simulator build of the accelerator for `config` (`waves`: one that
    traces every signal, FST where the simulator writes it)."""
    from sim import runners
    if simulator not in SIMULATORS:
        raise BackendError(f"unknown RTL simulator {simulator!r}; choose one of "
                           f"{', '.join(SIMULATORS)}")
    try:
        runners.check_simulator(simulator)
    except runners.SimulatorNotFound as error:
        raise BackendError(str(error)) from None
    started = time.monotonic()
    built = runners.build(accelerator_verilog(config.to_json(), internal_clock(simulator)),
                          TOPLEVEL, simulator, waves=waves)
    log.info("RTL %s build for %s ready in %.1f s (%s)", simulator, config.label,
             time.monotonic() - started, built.directory)
    return built


class RtlSimulation:
    """A running simulation of the accelerator, reachable at `self.url`.

    It serves `connections` clients one after another (the memories persist), then
    ends; `backpressure` (a seed) makes the byte pump stall both streams at random;
    `waves` traces every signal into `waves_file` (slower; for failures).
    """

    def __init__(self, config: AcceleratorConfig, simulator: str = "verilator", *,
                 backpressure: int | None = None, connections: int = 1, work_dir=None,
                 port: int = 0, accept_timeout: float | None = 60.0, waves: bool = False):
        self.config = config
        self.simulator = simulator
        self.built = build(config, simulator, waves)
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="samoyed-rtl-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port_file = self.work_dir / "port"
        self.port_file.unlink(missing_ok=True)
        self.error: BaseException | None = None
        self.stop_file = self.work_dir / "stop"
        self.stop_file.unlink(missing_ok=True)
        env = {"SAMOYED_RTL_PORT_FILE": str(self.port_file),
               "SAMOYED_RTL_INTERNAL_CLOCK": "1" if internal_clock(simulator) else "",
               "SAMOYED_RTL_BUFFERS": f"{RX_BYTES},{TX_BYTES}" if internal_clock(simulator)
               else "",
               "SAMOYED_RTL_STOP_FILE": str(self.stop_file),
               "SAMOYED_RTL_CONNECTIONS": str(connections),
               "SAMOYED_RTL_PORT": str(port),
               "SAMOYED_RTL_ACCEPT_TIMEOUT": "" if accept_timeout is None else str(accept_timeout)}
        if backpressure is not None:
            env["SAMOYED_RTL_BACKPRESSURE"] = str(backpressure)
        self._thread = threading.Thread(target=self._run, args=(env,), daemon=True,
                                        name=f"rtl-{simulator}")
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.port_file.exists():
            if not self._thread.is_alive():
                raise BackendError(f"the {simulator} simulation of the accelerator stopped "
                                   f"before listening: {self.error}")
            if time.monotonic() > deadline:
                raise BackendError(f"the {simulator} simulation did not start listening "
                                   f"within {START_TIMEOUT:.0f} s; see {self.work_dir}")
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())
        self.url = f"socket://127.0.0.1:{self.port}"

    def _run(self, env):
        from sim import runners
        try:
            runners.run(self.built, "sim.rtl_server", work_dir=self.work_dir,
                        module_dir=Path(__file__).resolve().parent.parent, extra_env=env,
                        rerun_with_waves=False)
        except BaseException as error:  # reported by __init__ / close
            self.error = error

    @property
    def waves_file(self) -> Path | None:
        """The waveform the simulation writes (with `waves=True`), else None."""
        if not self.built.waves:
            return None
        from sim import runners
        return self.work_dir / f"{TOPLEVEL}.{runners.wave_format(self.simulator)}"

    @property
    def alive(self) -> bool:
        """The simulator is still running."""
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Wait up to `timeout` s for the simulator to end."""
        self._thread.join(timeout)

    def _terminate(self) -> None:
        import os
        import signal
        try:
            pid = int(Path(f"{self.port_file}.pid").read_text())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            return
        self._thread.join(10)

    def close(self, timeout: float = 60.0) -> None:
        """End the simulation once its client has gone (waits up to `timeout` s)."""
        self.stop_file.touch()
        if self._thread.is_alive():
            try:                # wake a server waiting for its next client
                import socket
                socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
            except OSError:
                pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            # It did not get back to its accept loop (the stop file's check): end the
            # simulator process itself, so that no orphan keeps the port and the output.
            log.warning("the %s simulation did not stop within %.0f s; terminating it",
                        self.simulator, timeout)
            self._terminate()
        elif self.error is not None:
            log.warning("the %s simulation ended with an error: %s", self.simulator, self.error)
