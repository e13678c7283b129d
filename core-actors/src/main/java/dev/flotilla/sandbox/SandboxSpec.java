package dev.flotilla.sandbox;

import dev.flotilla.persistence.FlotillaSerializable;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * What a user asked for: immutable once the sandbox exists. Stored inside events, so fields are
 * only ever added (the Kryo record serializer fills missing ones with defaults on replay).
 *
 * @param diskMiB the writable layer's cap; 0 (sandboxes created before it existed): the driver's default
 * @param image the image its root runs, pinned to a manifest digest at create; empty: the default image
 */
public record SandboxSpec(String driver, int vcpus, int memoryMiB, Map<String, String> labels, RestartPolicy restartPolicy,
                          int diskMiB, String image)
    implements FlotillaSerializable {

  public SandboxSpec {
    Objects.requireNonNull(driver, "driver");
    labels = labels == null ? Map.of() : Map.copyOf(new TreeMap<>(labels));
    restartPolicy = restartPolicy == null ? RestartPolicy.ALWAYS : restartPolicy;
    image = image == null ? "" : image;
  }

  /** This spec running {@code pinned} (a reference pinned to its manifest digest). */
  public SandboxSpec withImage(String pinned) {
    return new SandboxSpec(driver, vcpus, memoryMiB, labels, restartPolicy, diskMiB, pinned);
  }

  /** A spec on the default image with the driver's default disk. */
  public SandboxSpec(String driver, int vcpus, int memoryMiB, Map<String, String> labels, RestartPolicy restartPolicy) {
    this(driver, vcpus, memoryMiB, labels, restartPolicy, 0, "");
  }
}
