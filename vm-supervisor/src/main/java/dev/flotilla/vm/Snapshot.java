package dev.flotilla.vm;

import java.nio.file.Path;

/**
 * A VM's complete state saved by {@link Vm#suspend} or {@link Vm#snapshot}: everything a driver
 * needs to start it again where it was ({@link VmSpec#RESTORE_FROM}), in one node-only directory.
 *
 * @param dir the snapshot's directory (node-only, 0700)
 * @param stateBytes the saved memory and device state
 * @param diskBytes the writable disk's apparent size
 * @param diskAllocatedBytes what the writable disk's copy takes on the host (it is copied sparsely)
 * @param elapsedMillis from the call to its return
 * @param pausedMillis how long the guest did not run for it: for a suspend, from the stop to the
 *     end of the save (the guest does not run again until it is restored); for a snapshot, until
 *     the source ran again
 * @param memory whether the snapshot holds the guest's memory: its processes continue where they
 *     were. False for a driver that keeps only the writable disk (the process driver without CRIU):
 *     the restore boots afresh on that disk
 */
public record Snapshot(Path dir, long stateBytes, long diskBytes, long diskAllocatedBytes, long elapsedMillis,
    long pausedMillis, boolean memory) {}
