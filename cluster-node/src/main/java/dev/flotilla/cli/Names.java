package dev.flotilla.cli;

import com.google.protobuf.Timestamp;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.RestartPolicy;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxSpec;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Collectors;

/** How API values are spelled in CLI output, shared by the text and JSON forms. */
final class Names {
  private Names() {}

  /** "RUNNING"; a phase added to the API after this CLI was built shows as its number. */
  static String phase(Sandbox s) {
    Phase p = Phase.forNumber(s.getPhaseValue());
    return p == null ? "PHASE_" + s.getPhaseValue() : p.name();
  }

  static String restartPolicy(SandboxSpec spec) {
    RestartPolicy p = RestartPolicy.forNumber(spec.getRestartPolicyValue());
    return p == null ? "RESTART_POLICY_" + spec.getRestartPolicyValue() : p.name();
  }

  static String rfc3339(Timestamp t) {
    return Instant.ofEpochSecond(t.getSeconds(), t.getNanos()).toString();
  }

  private static final DateTimeFormatter MILLIS =
      DateTimeFormatter.ofPattern("uuuu-MM-dd'T'HH:mm:ss.SSSX").withZone(ZoneOffset.UTC);

  /** RFC 3339 in UTC to the millisecond: a fixed width, so lines of output line up. */
  static String rfc3339Millis(Timestamp t) {
    return MILLIS.format(instant(t));
  }

  static Instant instant(Timestamp t) {
    return Instant.ofEpochSecond(t.getSeconds(), t.getNanos());
  }

  /** "app=web,tier=1", sorted by key; "-" when there are none. */
  static String labels(Map<String, String> labels) {
    if (labels.isEmpty()) return "-";
    return new TreeMap<>(labels).entrySet().stream()
        .map(e -> oneLine(e.getKey()) + "=" + oneLine(e.getValue()))
        .collect(Collectors.joining(","));
  }

  /** "on-failure", as users type it; "-" when the node's default applies. */
  static String restartPolicyForPeople(SandboxSpec spec) {
    if (spec.getRestartPolicyValue() == 0) return "-";
    return restartPolicy(spec).toLowerCase(java.util.Locale.ROOT).replace('_', '-');
  }

  /** Control characters escaped, so one value cannot break a table row or a watch line. */
  static String oneLine(String s) {
    StringBuilder b = null;
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f)) { // C0, DEL and C1 (0x9b is CSI to some terminals)
        if (b == null) b = new StringBuilder(s.substring(0, i));
        b.append(switch (c) {
          case '\n' -> "\\n";
          case '\t' -> "\\t";
          case '\r' -> "\\r";
          default -> String.format("\\x%02x", (int) c);
        });
      } else if (b != null) {
        b.append(c);
      }
    }
    return b == null ? s : b.toString();
  }

  /** An argv as a shell would take it back: words with spaces or quotes single-quoted. */
  static String argv(java.util.List<String> words) {
    StringBuilder b = new StringBuilder();
    for (String w : words) {
      if (b.length() > 0) b.append(' ');
      if (!w.isEmpty() && w.chars().allMatch(c -> Character.isLetterOrDigit(c) || "-_./=:,@%+".indexOf(c) >= 0)) {
        b.append(w);
      } else {
        b.append('\'').append(w.replace("'", "'\\''")).append('\'');
      }
    }
    return b.toString();
  }
}
