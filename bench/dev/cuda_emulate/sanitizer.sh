# Sourced by run.sh and by the SGEMM ladder's emulate/run_emulation.sh: SANITIZER (address, the
# default, or thread) selects the compiler flags, SANITIZE. Under ThreadSanitizer the harnesses
# count its reports per check and set the exit status themselves (so exitcode=0).
case ${SANITIZER:=address} in
  address) SANITIZE=(-fsanitize=address,undefined -fno-sanitize-recover=all) ;;
  thread) SANITIZE=(-fsanitize=thread); export TSAN_OPTIONS=${TSAN_OPTIONS:-exitcode=0} ;;
  *) echo "$(basename "$0"): SANITIZER must be address or thread, not '$SANITIZER'" >&2; exit 2 ;;
esac
