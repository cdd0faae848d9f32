# ./pydocklite-runtime's shell prelude (build.sh; tools/zipapp_fastpath.py --copy --prelude):
# the calls an engine makes for every container are answered here without starting Python
# (~10 ms of CPU each), exactly as runtime/api.py would answer them, from the plain files
# api.create writes for this purpose (any other case falls through to Python):
#   start ID            of a created container whose init (alive) waits on ROOT/ID/init.fifo
#                       (made by create when the container has no poststart hook): write "s"
#                       there, as runtime/init_sock.signal_start, then mark it used
#                       (ROOT/ID/started: an unlink would cost a process);
#   delete [--force] ID of a stopped container (its init, ROOT/ID/init.pid's "PID STARTTIME",
#                       gone) that has ROOT/ID/teardown (create writes it when there is no
#                       poststop hook): remove the cgroup directories it lists ("cg DIR"; any
#                       with a process left goes to Python, which kills them), then the state
#                       directory -- api.delete's steps, listed by api.create;
#   delete --force ID   of a container already gone: success (containerd and Docker call it
#                       after every delete).
_pdl_init() {  # the init in $1/init.pid: 0 alive, 1 gone (exited, a zombie, pid reused), 2 unknown
  read -r _p _s < "$1/init.pid" && [ -n "$_s" ] || return 2
  read -r _l 2>/dev/null < "/proc/$_p/stat" || return 1
  set -f; set -- ${_l##*) }; set +f    # state is field 3, the start time field 22
  [ "$1" != Z ] && [ "$1" != X ] && [ "${20}" = "$_s" ] || return 1
}
_pdl_delete() {  # $1: the state dir of a stopped container; returns 1 to leave it to Python
  [ -f "$1/teardown" ] || return 1
  _pdl_init "$1"; [ $? = 1 ] || return 1
  _sd=$1
  set --
  while read -r _k _v; do
    case $_k in
      cg) ! read -r _l 2>/dev/null < "$_v/cgroup.procs" || return 1
          set -- "$@" "$_v";;
    esac
  done < "$_sd/teardown"
  [ $# = 0 ] || rmdir -- "$@" 2>/dev/null
  for _v; do
    [ ! -d "$_v" ] || return 1      # a cgroup below it, or a process that just came
  done
  rm -rf -- "$_sd"
}
case " $* " in *" delete "*|*" start "*)
  _r= _f= _i= _v= _x= _skip= _root=
  for _a; do
    if [ -n "$_root" ]; then _r=$_a _root=; continue; fi
    if [ -n "$_skip" ]; then _skip=; continue; fi
    case $_a in
      --root) _root=1;; --root=*) _r=${_a#--root=};;
      --log|--log-format|--criu|--rootless) _skip=1;;
      --force|-f|--force=true) _f=1;;
      --debug|--systemd-cgroup|--log=*|--log-format=*|--rootless=*) ;;
      -*) _x=1;;
      *) if [ -z "$_v" ]; then _v=$_a; elif [ -z "$_i" ]; then _i=$_a; else _i=-; fi;;
    esac
  done
  case $_i in
    ''|-|*[!A-Za-z0-9_.+-]*|[!A-Za-z0-9]*) ;;
    *) if [ -z "$_r" ]; then    # runtime/state.default_root (Podman's conmon gives no --root)
         if [ -n "$XDG_RUNTIME_DIR" ]; then _r=$XDG_RUNTIME_DIR/pydocklite/runtime
         elif [ "$(id -u)" = 0 ]; then _r=/run/pydocklite/runtime
         else _r=/tmp/pydocklite-$(id -u)/pydocklite/runtime; fi
       fi
       _d=$_r/$_i
       if [ -n "$_x" ]; then :
       elif [ "$_v" = delete ] && [ ! -e "$_d" ]; then [ -z "$_f" ] || exit 0
       elif [ "$_v" = delete ]; then _pdl_delete "$_d" && exit 0
       elif [ "$_v" = start ] && [ -z "$_f" ] && [ -p "$_d/init.fifo" ] && [ ! -e "$_d/started" ] \
           && _pdl_init "$_d"; then
         { printf s >&3; } 3<>"$_d/init.fifo" && : > "$_d/started" && exit 0
       fi;;
  esac;;
esac
