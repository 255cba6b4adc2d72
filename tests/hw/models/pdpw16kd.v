// A behavioural model of the ECP5 PDPW16KD (the block RAM's pseudo-dual-port mode), for
// the configuration hw.bram instantiates: 512 words of 36 bits on both ports
// (DATA_WIDTH_W = DATA_WIDTH_R = 36), REGMODE NOREG or OUTREG (the output register,
// enabled by OCER), chip selects 0 with CSDECODE 0b000, RST low.
//
// Written from the primitive's interface as the open tools have it (yosys's
// techlibs/ecp5/cells_bb.v; the ports and parameters of Lattice's library, TN1264 /
// FPGA-TN-02204), Lattice's module-generator netlists of a 512x36 PDPW16KD and
// nextpnr-ecp5's packer, which makes it a DP16KD in its 36-bit mode; not from a vendor
// simulation model:
// - the write port: ADW[8:0] addresses a word; at a CLKW edge with CEW high, BEk writes
//   the 9-bit slot DI[9k+8:9k] (k = 0..3);
// - the read port: ADR[13:5] addresses a word (ADR[4:0] unused at 36 bits); at a CLKR
//   edge with CER high the word is read (CER low holds the last word read); with
//   REGMODE OUTREG it goes into the output register at the next CLKR edge with OCER
//   high;
// - DO is numbered the other way round from DI: DO[35:18] carries the bits DI[17:0]
//   wrote, DO[17:0] those of DI[35:18] (Lattice's module generator connects Q[17:0] to
//   DO[35:18]; nextpnr's packer maps DO[35:18] to the block's DOA, yosys's 36-bit map
//   reads DI[17:0] back from DOA).
// The primitive has no WRITEMODE: a read of the word being written at the same edge is
// not defined, and reads X here. The contents start X.
module PDPW16KD #(
  parameter integer DATA_WIDTH_W = 36, parameter integer DATA_WIDTH_R = 36,
  parameter GSR = "ENABLED", parameter REGMODE = "NOREG",
  parameter RESETMODE = "SYNC", parameter ASYNC_RESET_RELEASE = "SYNC",
  parameter CSDECODE_W = "0b000", parameter CSDECODE_R = "0b000"
) (
  input DI0, DI1, DI2, DI3, DI4, DI5, DI6, DI7, DI8, DI9, DI10, DI11, DI12, DI13, DI14,
        DI15, DI16, DI17, DI18, DI19, DI20, DI21, DI22, DI23, DI24, DI25, DI26, DI27, DI28,
        DI29, DI30, DI31, DI32, DI33, DI34, DI35,
  input ADW0, ADW1, ADW2, ADW3, ADW4, ADW5, ADW6, ADW7, ADW8,
  input BE0, BE1, BE2, BE3, CEW, CLKW, CSW0, CSW1, CSW2,
  input ADR0, ADR1, ADR2, ADR3, ADR4, ADR5, ADR6, ADR7, ADR8, ADR9, ADR10, ADR11, ADR12,
        ADR13,
  input CER, OCER, CLKR, CSR0, CSR1, CSR2, RST,
  output DO0, DO1, DO2, DO3, DO4, DO5, DO6, DO7, DO8, DO9, DO10, DO11, DO12, DO13, DO14,
         DO15, DO16, DO17, DO18, DO19, DO20, DO21, DO22, DO23, DO24, DO25, DO26, DO27, DO28,
         DO29, DO30, DO31, DO32, DO33, DO34, DO35
);
  wire [35:0] di = {DI35, DI34, DI33, DI32, DI31, DI30, DI29, DI28, DI27, DI26, DI25, DI24,
                    DI23, DI22, DI21, DI20, DI19, DI18, DI17, DI16, DI15, DI14, DI13, DI12,
                    DI11, DI10, DI9, DI8, DI7, DI6, DI5, DI4, DI3, DI2, DI1, DI0};
  wire [8:0] wa = {ADW8, ADW7, ADW6, ADW5, ADW4, ADW3, ADW2, ADW1, ADW0};
  wire [8:0] ra = {ADR13, ADR12, ADR11, ADR10, ADR9, ADR8, ADR7, ADR6, ADR5};
  wire [3:0] be = {BE3, BE2, BE1, BE0};
  wire [35:0] slots = {{9{BE3}}, {9{BE2}}, {9{BE1}}, {9{BE0}}};
  wire selected_w = {CSW2, CSW1, CSW0} == 3'b000;
  wire selected_r = {CSR2, CSR1, CSR0} == 3'b000;
  reg [35:0] mem [0:511];
  reg [35:0] latch = 0, outreg = 0;
  wire [35:0] word = REGMODE == "OUTREG" ? outreg : latch;
  // DO[35:18] is the word's low half (see above)
  assign {DO35, DO34, DO33, DO32, DO31, DO30, DO29, DO28, DO27, DO26, DO25, DO24, DO23,
          DO22, DO21, DO20, DO19, DO18} = word[17:0];
  assign {DO17, DO16, DO15, DO14, DO13, DO12, DO11, DO10, DO9, DO8, DO7, DO6, DO5, DO4,
          DO3, DO2, DO1, DO0} = word[35:18];
  integer k;
  initial begin
    if (DATA_WIDTH_W != 36 || DATA_WIDTH_R != 36)
      $fatal(1, "PDPW16KD model: only 36-bit ports are modelled");
    if (REGMODE != "NOREG" && REGMODE != "OUTREG")
      $fatal(1, "PDPW16KD model: REGMODE %s", REGMODE);
    if (CSDECODE_W != "0b000" || CSDECODE_R != "0b000")
      $fatal(1, "PDPW16KD model: chip-select decode not modelled");
    for (k = 0; k < 512; k = k + 1) mem[k] = 36'bx;
  end
  wire writes = CEW & selected_w & |be;
  always @(posedge CLKR) begin
    if (RST) $fatal(1, "PDPW16KD model: RST not modelled");
    if (REGMODE == "OUTREG" && OCER) outreg <= latch;
    if (CER & selected_r) latch <= (writes && wa == ra) ? 36'bx : mem[ra];
  end
  always @(posedge CLKW)
    if (CEW & selected_w) mem[wa] <= (mem[wa] & ~slots) | (di & slots);
endmodule
