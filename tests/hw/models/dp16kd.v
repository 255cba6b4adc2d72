// A behavioural model of the ECP5 DP16KD, for the modes hw.bram instantiates: the same
// data width on both ports (1, 2, 4, 9 or 18 bits; the address on AD[13:lsb]), port A
// writing (x18: ADA0/ADA1 enable DI[8:0]/DI[17:9]), port B reading, WRITEMODE NORMAL,
// REGMODE NOREG or OUTREG (the output register, enabled by OCE), chip selects 0.
// Written from Lattice's ECP5 memory usage guide (TN1264), not from a vendor model. A
// read of the address port A writes at the same edge is undefined in the block: it
// reads X here.
module DP16KD #(
  parameter integer DATA_WIDTH_A = 18, parameter integer DATA_WIDTH_B = 18,
  parameter REGMODE_A = "NOREG", parameter REGMODE_B = "NOREG",
  parameter RESETMODE = "SYNC", parameter ASYNC_RESET_RELEASE = "SYNC",
  parameter CSDECODE_A = "0b000", parameter CSDECODE_B = "0b000",
  parameter WRITEMODE_A = "NORMAL", parameter WRITEMODE_B = "NORMAL",
  parameter GSR = "ENABLED"
) (
  input CLKA, CEA, OCEA, WEA, RSTA, CSA0, CSA1, CSA2,
  input ADA0, ADA1, ADA2, ADA3, ADA4, ADA5, ADA6, ADA7, ADA8, ADA9, ADA10, ADA11, ADA12, ADA13,
  input DIA0, DIA1, DIA2, DIA3, DIA4, DIA5, DIA6, DIA7, DIA8, DIA9, DIA10, DIA11, DIA12,
        DIA13, DIA14, DIA15, DIA16, DIA17,
  output DOA0, DOA1, DOA2, DOA3, DOA4, DOA5, DOA6, DOA7, DOA8, DOA9, DOA10, DOA11, DOA12,
         DOA13, DOA14, DOA15, DOA16, DOA17,
  input CLKB, CEB, OCEB, WEB, RSTB, CSB0, CSB1, CSB2,
  input ADB0, ADB1, ADB2, ADB3, ADB4, ADB5, ADB6, ADB7, ADB8, ADB9, ADB10, ADB11, ADB12, ADB13,
  input DIB0, DIB1, DIB2, DIB3, DIB4, DIB5, DIB6, DIB7, DIB8, DIB9, DIB10, DIB11, DIB12,
        DIB13, DIB14, DIB15, DIB16, DIB17,
  output DOB0, DOB1, DOB2, DOB3, DOB4, DOB5, DOB6, DOB7, DOB8, DOB9, DOB10, DOB11, DOB12,
         DOB13, DOB14, DOB15, DOB16, DOB17
);
  localparam integer W = DATA_WIDTH_A;
  localparam integer LSB = W == 18 ? 4 : W == 9 ? 3 : W == 4 ? 2 : W == 2 ? 1 : 0;
  localparam integer DEPTH = 16384 >> LSB;
  wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
  wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
  wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7,
                     DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [13:0] wa = ada >> LSB;
  wire [13:0] ra = adb >> LSB;
  reg [17:0] mem [0:DEPTH-1];
  reg [17:0] latch = 0, outreg = 0;
  wire [17:0] dob = REGMODE_B == "OUTREG" ? outreg : latch;
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6,
          DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6,
          DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = 18'bx;
  integer k;
  initial begin
    if (DATA_WIDTH_A != DATA_WIDTH_B) $fatal(1, "DP16KD model: different port widths");
    if (REGMODE_A != "NOREG" || WRITEMODE_A != "NORMAL" || WRITEMODE_B != "NORMAL")
      $fatal(1, "DP16KD model: mode not modelled");
    for (k = 0; k < DEPTH; k = k + 1) mem[k] = 18'bx;
  end
  wire a_writes = CEA & WEA & ~RSTA;
  wire [17:0] lanes = W == 18 ? {{9{ADA1}}, {9{ADA0}}} : {18{1'b1}};
  always @(posedge CLKB) begin
    if (WEB & CEB) $fatal(1, "DP16KD model: port B writes");
    if (REGMODE_B == "OUTREG" && OCEB) outreg <= latch;
    if (CEB) latch <= (a_writes && wa == ra) ? 18'bx : mem[ra];
  end
  always @(posedge CLKA)
    if (a_writes) mem[wa] <= (mem[wa] & ~lanes) | (dia & lanes);
endmodule
