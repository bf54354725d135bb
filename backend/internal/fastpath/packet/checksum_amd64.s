#include "textflag.h"

// func sumVector(b []byte) uint64
//
// Four accumulators of eight 32-bit lanes each take the input 16 bytes at a time,
// widened from 16-bit words (VPMOVZXWD), so no carry is ever lost inside the loop; the
// lanes are then widened to 64 bits and added up.
TEXT ·sumVector(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3

loop:
	VPMOVZXWD 0(SI), Y4
	VPMOVZXWD 16(SI), Y5
	VPMOVZXWD 32(SI), Y6
	VPMOVZXWD 48(SI), Y7
	VPADDD    Y4, Y0, Y0
	VPADDD    Y5, Y1, Y1
	VPADDD    Y6, Y2, Y2
	VPADDD    Y7, Y3, Y3
	ADDQ      $64, SI
	SUBQ      $64, CX
	JNZ       loop

	// Widen the 32 lanes to 64 bits and add them into the four lanes of Y8.
	VPMOVZXDQ    X0, Y8
	VEXTRACTI128 $1, Y0, X4
	VPMOVZXDQ    X4, Y4
	VPADDQ       Y4, Y8, Y8
	VPMOVZXDQ    X1, Y4
	VPADDQ       Y4, Y8, Y8
	VEXTRACTI128 $1, Y1, X4
	VPMOVZXDQ    X4, Y4
	VPADDQ       Y4, Y8, Y8
	VPMOVZXDQ    X2, Y4
	VPADDQ       Y4, Y8, Y8
	VEXTRACTI128 $1, Y2, X4
	VPMOVZXDQ    X4, Y4
	VPADDQ       Y4, Y8, Y8
	VPMOVZXDQ    X3, Y4
	VPADDQ       Y4, Y8, Y8
	VEXTRACTI128 $1, Y3, X4
	VPMOVZXDQ    X4, Y4
	VPADDQ       Y4, Y8, Y8

	// Add the four 64-bit lanes.
	VEXTRACTI128 $1, Y8, X4
	VPADDQ       X4, X8, X8
	VPSHUFD      $0x4e, X8, X4
	VPADDQ       X4, X8, X8
	VMOVQ        X8, AX
	VZEROUPPER
	MOVQ         AX, ret+24(FP)
	RET
