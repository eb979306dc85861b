#!/bin/sh
# Builds and runs keyward's libFuzzer target with ASan + UBSan for a bounded
# time. Usage: scripts/fuzz.sh [SECONDS]   (default 60)
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=build-fuzz
mkdir -p "$out/corpus"
# shellcheck disable=SC2046 # pkg-config prints several flags
clang -std=c17 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -Isrc -o "$out/fuzz_input" fuzz/fuzz_input.c \
	src/core/base62.c src/core/ids.c src/core/keyfmt.c src/core/pepper.c \
	src/core/status.c src/core/validate.c src/http/clientaddr.c src/http/origin.c \
	$(pkg-config --cflags --libs libsodium zlib jansson libmicrohttpd)
# Seeds: a real key, a name, an email, a keyring, forwarding headers, an origin.
printf 'kw_production_jNBLzISEA1DWLKCzcGiWAURw8rOiLq0NCpF7wwKdv1H0Lt5Ya' >"$out/corpus/key"
printf '  Production CRM \xf0\x9f\x94\x91 ' >"$out/corpus/name"
printf 'admin@example.com' >"$out/corpus/email"
printf '1:%064d\n2:%064d\n' 0 1 >"$out/corpus/pepper"
printf '198.51.100.1, [2001:db8::7]:4711, 10.0.0.2' >"$out/corpus/xff"
printf 'for="[2001:db8:cafe::17]:4711";proto=https, for=_hidden, for=unknown' >"$out/corpus/forwarded"
printf 'https://keys.example.com:8443' >"$out/corpus/origin"
"$out/fuzz_input" -max_total_time="$seconds" -max_len=512 -print_final_stats=1 "$out/corpus"
