package dev.flotilla.sandbox;

import dev.flotilla.persistence.FlotillaSerializable;
import java.util.List;

/**
 * A sandbox's network. Part of its spec, so stored inside events: fields are only ever added.
 *
 * @param mode {@code none} (no network but loopback) or {@code egress} (outbound connections
 *     through its node, with a DNS resolver)
 * @param allow with egress, the only destinations it may reach (CIDRs or host names); empty: any
 * @param deny with egress, destinations it may never reach; deny wins over allow
 */
public record Network(String mode, List<String> allow, List<String> deny) implements FlotillaSerializable {
  public static final String NONE = "none";
  public static final String EGRESS = "egress";
  /** What sandboxes created before networking existed replay as. */
  public static final Network OFF = new Network(NONE, List.of(), List.of());

  public Network {
    mode = mode == null || mode.isEmpty() ? NONE : mode;
    allow = allow == null ? List.of() : List.copyOf(allow);
    deny = deny == null ? List.of() : List.copyOf(deny);
  }

  public boolean egress() {
    return EGRESS.equals(mode);
  }

  /** The driver options that carry it ({@link dev.flotilla.vm.net.EgressPolicy}); none for {@code none}. */
  public java.util.Map<String, String> vmOptions() {
    if (!egress()) return java.util.Map.of();
    return java.util.Map.of(dev.flotilla.vm.net.EgressPolicy.NETWORK, EGRESS,
        dev.flotilla.vm.net.EgressPolicy.ALLOW, String.join(",", allow),
        dev.flotilla.vm.net.EgressPolicy.DENY, String.join(",", deny));
  }
}
