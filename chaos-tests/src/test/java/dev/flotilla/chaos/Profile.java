package dev.flotilla.chaos;

import java.time.Duration;

/**
 * How big a run is: {@code -Dchaos.profile=ci} (default: 3 nodes, a few dozen sandboxes, 2 host
 * kills, sized for ~8 minutes on 2 cores) or {@code large} ({@code mvn -Pchaos-large}). Single values can be
 * overridden: {@code -Dchaos.sandboxes=N}, {@code -Dchaos.kills=N}, {@code -Dchaos.comparisons=true} (the
 * host loss under Pekko's default timings, a figure to compare with, not a check of the product).
 *
 * @param recoveryBound the documented bound within which every sandbox that should run answers an
 *     exec again after a fault (the only timing used in an assertion, as an await timeout)
 */
record Profile(String name, int nodes, int sandboxes, int hostKills, int clients, Duration recoveryBound, boolean comparisons) {

  static Profile current() {
    String name = System.getProperty("chaos.profile", "ci");
    Profile p = switch (name) {
      // 20 host losses: enough kills for the recovery figures' median and max to mean something
      case "large" -> new Profile("large", 3, 60, 20, 4, Duration.ofSeconds(120), true);
      // 2 host kills (the first of the node a suspended sandbox is on, then another; ~35 s each)
      // and without the comparison run under Pekko's default timings (4 minutes of a CI budget that
      // tests of the product need more): the large profile makes the figures; -Dchaos.kills=N and
      // -Dchaos.comparisons=true bring them back
      default -> new Profile("ci", 3, 18, 2, 3, Duration.ofSeconds(60), false);
    };
    return new Profile(p.name, p.nodes,
        Integer.getInteger("chaos.sandboxes", p.sandboxes),
        Integer.getInteger("chaos.kills", p.hostKills),
        Integer.getInteger("chaos.clients", p.clients),
        Duration.ofSeconds(Long.getLong("chaos.recovery-bound-seconds", p.recoveryBound.toSeconds())),
        Boolean.parseBoolean(System.getProperty("chaos.comparisons", Boolean.toString(p.comparisons))));
  }

  @Override
  public String toString() {
    return name + " (" + nodes + " nodes, " + sandboxes + " sandboxes, " + hostKills + " host kills, " + clients
        + " clients, recovery bound " + recoveryBound.toSeconds() + " s" + (comparisons ? ", with comparisons" : "") + ")";
  }
}
