# emu_rewrite.pl — turns a .cu file into C++ for the CUDA emulator (run as perl -0777 -p, so $_
# is the whole file). Lines are kept and a #line names the real file, so compiler messages and
# emulator reports point into it. It rewrites only what C++ cannot say; cnn_emu_kernel.h does
# the rest.

# extern __shared__ T name[];  ->  a pointer to the launch's dynamic shared memory
s/\bextern\s+__shared__\s+([^;]*?)\s*\b(\w+)\s*\[\s*\]\s*;/$1 *$2 = (decltype($2))cnn_emu_dynamic_shared();/g;

# __shared__ T name[dims];  ->  a static array, registered (size check, poisoning per block)
s/\b__shared__\s+([^;]*?)\s*\b(\w+)\s*((?:\[[^\]]*\]\s*)*);/static $1 $2$3; cnn_emu_shared(&$2, sizeof $2);/g;

# __launch_bounds__(n) kernel(params) {  ->  kernel(params) { cnn_emu_launch_bounds(n);
# (a launch with more threads per block than n is refused by the GPU)
s/__launch_bounds__\s*(\((?:[^()]++|(?1))*\))(\s*\w+\s*(\((?:[^()]++|(?3))*\))\s*\{)/$2 cnn_emu_launch_bounds$1;/g;

# kernel<tmpl><<<grid, block, smem, stream>>>(args)
#   ->  kernel<tmpl> * cnn_emu_cfg("kernel", grid, block, smem, stream)(args)
s/(\b\w+)(\s*<[^<>;]*(?:<[^<>;]*>[^<>;]*)*>)?\s*<<</$1$2 * cnn_emu_cfg(CNN_EMU_STR($1), /g;
s/>>>/)/g;

$_ = qq{#line 1 "$ARGV"\n} . $_;
