/* The fast matmul built a second time with its AVX-512 instances compiled
 * for AVX2 and vpdpbusd emulated exactly (EY_MM_EMU_VNNI), under renamed
 * entry points, so test_matmul can check the VNNI kernels' logic (tiling,
 * offsets, the Q8_0 xor-0x80 trick) on hosts without AVX-512. */
#define EY_MM_EMU_VNNI 1
#define ey_cpu_matmul ey_cpu_matmul_vnniemu
#define ey_cpu_matmul_scratch_bytes ey_cpu_matmul_scratch_bytes_vnniemu
#define ey_cpu_matmul_isa ey_cpu_matmul_isa_vnniemu
#define ey_cpu_repack_type ey_cpu_repack_type_vnniemu
#include "kernels/cpu/cpu_matmul.c"
