package dev.flotilla.cli;

import java.time.Duration;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** {@code --timeout} values ("500ms", "10s", "2m", or plain seconds) and short human durations. */
public final class Durations {
  private static final Pattern VALUE = Pattern.compile("(\\d+)(ms|s|m|h|d)?");

  private Durations() {}

  public static Duration parse(String text) {
    Duration d = parseOrZero(text);
    if (d.isZero()) {
      throw new IllegalArgumentException("'" + text + "' is not a duration above zero");
    }
    return d;
  }

  /** As {@link #parse}, but 0 is allowed (e.g. "no timeout"). */
  public static Duration parseOrZero(String text) {
    Matcher m = VALUE.matcher(text.strip().toLowerCase(Locale.ROOT));
    if (!m.matches()) {
      throw new IllegalArgumentException(
          "'" + text + "' is not a duration (use e.g. 500ms, 10s, 2m, 1h, 7d)");
    }
    try {
      long n = Long.parseLong(m.group(1));
      String unit = m.group(2) == null ? "s" : m.group(2);
      return switch (unit) {
        case "ms" -> Duration.ofMillis(n);
        case "m" -> Duration.ofMinutes(n);
        case "h" -> Duration.ofHours(n);
        case "d" -> Duration.ofDays(n);
        default -> Duration.ofSeconds(n);
      };
    } catch (ArithmeticException | NumberFormatException e) {
      throw new IllegalArgumentException("'" + text + "' is too long a duration");
    }
  }

  /** "250ms", "10s", "2m", "1h30m": for messages and the AGE column. */
  public static String format(Duration d) {
    if (d.isNegative()) d = Duration.ZERO;
    long ms = d.toMillis();
    if (ms < 1000 && ms != 0) return ms + "ms";
    if (ms < 60_000 && ms % 1000 != 0) return String.format(java.util.Locale.ROOT, "%.1fs", ms / 1000.0);
    long s = d.getSeconds();
    if (s < 60) return s + "s";
    if (s < 3600) return (s / 60) + "m" + (s % 60 == 0 || s >= 600 ? "" : (s % 60) + "s");
    if (s < 86400) return (s / 3600) + "h" + (s % 3600 / 60 == 0 || s >= 36000 ? "" : (s % 3600 / 60) + "m");
    return (s / 86400) + "d";
  }
}
