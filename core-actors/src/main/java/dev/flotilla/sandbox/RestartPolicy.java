package dev.flotilla.sandbox;

/** When a sandbox whose VM ended is given a new incarnation. */
public enum RestartPolicy {
  /** Whenever the VM ends while the sandbox should run. */
  ALWAYS,
  /** When the VM ends abnormally: non-zero exit, a signal, or a lost agent. */
  ON_FAILURE,
  /** Never: the sandbox goes STOPPED with the reason. */
  NEVER;

  boolean restartsAfter(VmEnd end) {
    return switch (this) {
      case ALWAYS -> true;
      case ON_FAILURE -> end.abnormal();
      case NEVER -> false;
    };
  }
}
