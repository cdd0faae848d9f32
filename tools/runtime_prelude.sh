# ./pydocklite-runtime's shell prelude (build.sh; tools/zipapp_fastpath.py --copy --prelude):
# two calls an engine makes for every container are answered here without starting Python,
# exactly as runtime/api.py would answer them (any other case falls through to Python):
#   delete --force ID   of a container already gone: success (containerd and Docker call it
#                       after every delete);
#   start ID            of a created container whose init waits on ROOT/ID/init.fifo (made by
#                       create when the container has no poststart hook): write "s" there,
#                       then remove the "created" markers, as runtime/init_sock.signal_start.
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
       elif [ "$_v" = delete ] && [ -n "$_f" ] && [ ! -e "$_d" ]; then exit 0
       elif [ "$_v" = start ] && [ -z "$_f" ] && [ -p "$_d/init.fifo" ] && [ -S "$_d/init.sock" ] \
           && read -r _p < "$_d/init.pid" && [ -d "/proc/$_p" ]; then
         { printf s >&3; } 3<>"$_d/init.fifo" && rm -f "$_d/init.sock" "$_d/init.fifo" && exit 0
       fi;;
  esac;;
esac
