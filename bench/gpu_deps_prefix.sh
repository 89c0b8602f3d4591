#!/bin/bash
# Builds a prefix of this Debian 12 machine's build dependencies (headers, CMake configs, shared
# libraries and protoc/grpc_cpp_plugin) for a machine that has only a CUDA LibTorch, such as a
# GPU image, so that bench/gpu_check.sh can build there. About 60 MB. Libraries that OpenCV's
# core and imgcodecs link for things yolod never uses (GDAL, GDCM, OpenEXR, BLAS/LAPACK) are
# replaced by stubs; a build with this prefix is for checking, not for shipping.
#
# Usage: bench/gpu_deps_prefix.sh OUT_DIR   (then, on the GPU machine:
#   export LD_LIBRARY_PATH=OUT_DIR/root/usr/lib/x86_64-linux-gnu PATH=OUT_DIR/root/usr/bin:$PATH
#   YOLO_DEPS_PREFIX=OUT_DIR/root/usr bench/gpu_check.sh; delete from that folder the runtime
#   libraries the machine already has, except gRPC's, protobuf's, OpenSSL's and zlib's, whose
#   development links the build needs.)
set -euo pipefail
mkdir -p "$1"
cd "$1"
rm -rf root stub; mkdir -p root/usr/include root/usr/lib/x86_64-linux-gnu/cmake stub
L=/usr/lib/x86_64-linux-gnu
R=root/usr/lib/x86_64-linux-gnu
for d in opencv4 absl spdlog fmt yaml-cpp CLI; do cp -a /usr/include/$d root/usr/include/; done
for d in absl spdlog fmt yaml-cpp; do cp -a $L/cmake/$d $R/cmake/; done
mkdir -p root/usr/share/cmake && cp -a /usr/share/cmake/CLI11 root/usr/share/cmake/
# Shared libraries: copy file + symlinks.
copylib() { for f in "$@"; do cp -a "$f" $R/ 2>/dev/null || true; t=$(readlink -f "$f"); cp -n "$t" $R/; done; }
copylib $L/libabsl_*.so $L/libabsl_*.so.2022*
copylib $L/libspdlog.so* $L/libfmt.so* $L/libyaml-cpp.so*
copylib $L/libopencv_core.so* $L/libopencv_imgproc.so* $L/libopencv_imgcodecs.so*
# gRPC, protobuf and what gRPC's CMake config looks for (OpenSSL, c-ares, re2, zlib).
for d in grpc grpcpp grpc++ google openssl re2 ares.h ares_build.h ares_dns.h ares_nameser.h \
         ares_rules.h ares_version.h zlib.h zconf.h; do
  [[ -e /usr/include/$d ]] && cp -a /usr/include/$d root/usr/include/
done
cp -a /usr/include/x86_64-linux-gnu/openssl/. root/usr/include/openssl/
cp -a $L/cmake/grpc $R/cmake/
mkdir -p root/usr/bin
cp -L /usr/bin/protoc /usr/bin/grpc_*_plugin root/usr/bin/
copylib $L/libgrpc*.so* $L/libgpr.so* $L/libaddress_sorting.so* $L/libupb.so* $L/libprotobuf.so* \
  $L/libprotoc.so* $L/libcares.so* $L/libre2.so* $L/libssl.so* $L/libcrypto.so* $L/libz.so
# gRPC libraries we never link: CMake only checks that they exist.
for f in libgrpc_unsecure.so.29.0.0 libgrpc++_unsecure.so.1.51.1 libgrpcpp_channelz.so.1.51.1 \
         libgrpc++_alts.so.1.51.1 libgrpc++_error_details.so.1.51.1; do
  [[ -e $R/$f ]] && : >"$R/$f"
done
# Runtime closure of what we carry, minus glibc/gcc and the stubbed libraries.
stubbed='libgdal.so.32 libgdcmMSFF.so.3.0 libgdcmDSED.so.3.0 libOpenEXR-3_1.so.30'
for f in $R/libopencv_core.so.406 $R/libopencv_imgproc.so.406 $L/libjpeg.so.62 $L/libwebp.so.7 \
         $L/libpng16.so.16 $L/libtiff.so.6 $L/libopenjp2.so.7 $R/libspdlog.so.1.10 $L/libtbb.so.12 \
         $L/libGLX.so.0; do
  echo $f; LD_LIBRARY_PATH=$R ldd $f | awk '/=>/ {print $3}'
done | sort -u | grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux|libpthread|libdl|librt)\.so' \
  | grep -v "^$R" | grep -v -E 'lib(openblas|lapack|blas|gfortran|quadmath)' \
  | while read f; do cp -nL "$f" $R/; done
# Stub: every symbol imgcodecs needs from the stubbed libraries.
undef=$(nm -D --undefined-only $L/libopencv_imgcodecs.so.406 | awk '{print $2}' | sed 's/@.*//' | sort -u)
{
  for lib in $stubbed; do
    nm -D --defined-only $L/$lib | awk '{print $2, $3}'
  done
} | sort -u -k2 > stub/defined.txt
echo "$undef" > stub/undef.txt
awk 'NR==FNR {u[$1]=1; next} ($2 in u) {print}' stub/undef.txt stub/defined.txt > stub/needed.txt
{
  echo '.text'
  awk '$1 ~ /[TtWi]/ {printf ".globl %s\n.type %s,@function\n%s:\n  xor %%eax,%%eax\n  ret\n", $2, $2, $2}' stub/needed.txt
  echo '.data'
  awk '$1 !~ /[TtWi]/ {printf ".globl %s\n.type %s,@object\n.size %s,256\n%s:\n  .zero 256\n", $2, $2, $2, $2}' stub/needed.txt
} > stub/stub.s
gcc -shared -o stub/libyolostub.so stub/stub.s -Wl,-soname,libgdal.so.32
# BLAS/LAPACK: OpenCV's core links them for solvers our code never calls.
nm -D --undefined-only $L/libopencv_core.so.406 | awk '{print $2}' | sed 's/@.*//' |
  grep -E '^([sdcz][a-z0-9]+_|cblas_.*|LAPACKE_.*)$' >stub/blas.txt
awk '{printf ".globl %s\n.type %s,@function\n%s:\n  xor %%eax,%%eax\n  ret\n", $1, $1, $1}' stub/blas.txt \
  >stub/blas.s
for lib in liblapack.so.3 libblas.so.3; do
  gcc -shared -o $R/$lib stub/blas.s -Wl,-soname,$lib
done
cp stub/libyolostub.so $R/libgdal.so.32
for lib in libgdcmMSFF.so.3.0 libgdcmDSED.so.3.0 libOpenEXR-3_1.so.30; do
  echo '' > stub/empty.s; gcc -shared -o $R/$lib stub/empty.s -Wl,-soname,$lib
done
# Config files for re2 and c-ares, which Debian finds through pkg-config.
mkdir -p $R/cmake/re2 $R/cmake/c-ares
cat > $R/cmake/re2/re2Config.cmake <<'CM'
get_filename_component(_p "${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)
if(NOT TARGET re2::re2)
  add_library(re2::re2 SHARED IMPORTED)
  set_target_properties(re2::re2 PROPERTIES
    IMPORTED_LOCATION "${_p}/lib/x86_64-linux-gnu/libre2.so.9"
    INTERFACE_INCLUDE_DIRECTORIES "${_p}/include")
endif()
set(re2_FOUND TRUE)
CM
cat > $R/cmake/c-ares/c-aresConfig.cmake <<'CM'
get_filename_component(_p "${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)
if(NOT TARGET c-ares::cares)
  add_library(c-ares::cares SHARED IMPORTED)
  set_target_properties(c-ares::cares PROPERTIES
    IMPORTED_LOCATION "${_p}/lib/x86_64-linux-gnu/libcares.so.2"
    INTERFACE_INCLUDE_DIRECTORIES "${_p}/include")
endif()
set(c-ares_FOUND TRUE)
CM
# A minimal OpenCV config: Debian's checks that every module's library exists.
mkdir -p $R/cmake/opencv4
cat > $R/cmake/opencv4/OpenCVConfig.cmake <<'CM'
get_filename_component(_cv_root "${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)
set(OpenCV_VERSION 4.6.0)
set(OpenCV_INCLUDE_DIRS "${_cv_root}/include/opencv4")
foreach(m core imgproc imgcodecs)
  if(NOT TARGET opencv_${m})
    add_library(opencv_${m} SHARED IMPORTED)
    set_target_properties(opencv_${m} PROPERTIES
      IMPORTED_LOCATION "${_cv_root}/lib/x86_64-linux-gnu/libopencv_${m}.so.406"
      INTERFACE_INCLUDE_DIRECTORIES "${OpenCV_INCLUDE_DIRS}")
  endif()
endforeach()
set(OpenCV_LIBS opencv_core opencv_imgproc opencv_imgcodecs)
set(OpenCV_FOUND TRUE)
CM
wc -l stub/needed.txt; du -sh root
