package dev.flotilla.sandbox;

/** Lifecycle phase of a sandbox; see ARCHITECTURE.md for the transitions. */
public enum Phase {
  CREATING,
  RUNNING,
  PAUSED,
  /** Its VM's memory, devices and writable disk are saved in the snapshot store; no VM runs. Stored by name. */
  SUSPENDED,
  STOPPING,
  STOPPED,
  DELETING,
  DELETED,
  FAILED;

  /** Phases in which a VM of the current incarnation may exist. */
  boolean hasVm() {
    return this == CREATING || this == RUNNING || this == PAUSED || this == STOPPING || this == DELETING;
  }
}
