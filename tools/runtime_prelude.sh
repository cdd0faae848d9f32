# ./pydocklite-runtime's shell prelude (build.sh; tools/zipapp_fastpath.py --copy --prelude):
# `delete --force ID` of a container already gone, which containerd's shim and Docker call after
# every delete, succeeds here without starting Python, exactly as runtime/api.delete would.
case " $* " in *" delete "*)
  _r= _f= _i= _v= _skip= _root=
  for _a; do
    if [ -n "$_root" ]; then _r=$_a _root=; continue; fi
    if [ -n "$_skip" ]; then _skip=; continue; fi
    case $_a in
      --root) _root=1;; --root=*) _r=${_a#--root=};;
      --log|--log-format|--criu|--rootless) _skip=1;;
      --force|-f|--force=true) _f=1;;
      -*) ;;
      *) if [ -z "$_v" ]; then _v=$_a; elif [ -z "$_i" ]; then _i=$_a; else _i=-; fi;;
    esac
  done
  case $_i in
    ''|-|*[!A-Za-z0-9_.+-]*|[!A-Za-z0-9]*) ;;
    *) [ "$_v" = delete ] && [ -n "$_f" ] && [ -n "$_r" ] && [ ! -e "$_r/$_i" ] && exit 0;;
  esac;;
esac
