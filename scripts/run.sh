#!/bin/sh
# Prepares a keyward data directory and shows how to use it.
# Usage: scripts/run.sh BINARY DATA_DIR
set -eu
bin=$1
dir=$2
"$bin" --data-dir "$dir" migrate
cat <<TXT

keyward is built: $bin (data in $dir: keyward.db and the pepper file, mode 0600).

Try it:
  $bin --data-dir $dir account create "Acme"
  $bin --data-dir $dir key create --account ACC_ID --name "Production CRM"
  echo KEY | $bin --data-dir $dir key verify

The HTTP server and the web console are not part of this build yet.
TXT
