package dev.flotilla.cli;

import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.RestartPolicy;
import java.time.Duration;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * Command-line values checked before anything is sent, so a typo is a usage error (exit 2) that
 * says what to type instead. Bounds that depend on the node's configuration (vCPUs, memory,
 * drivers) are left to the node.
 */
public final class ArgParsers {
  private static final Pattern REQUEST_ID = Pattern.compile("[A-Za-z0-9._-]{1,128}");

  private ArgParsers() {}

  /** "k=v" pairs, in the order given; a key given twice is a mistake, not an override. */
  public static Map<String, String> labels(List<String> pairs) {
    Map<String, String> labels = new LinkedHashMap<>();
    if (pairs == null) return labels;
    for (String pair : pairs) {
      int eq = pair.indexOf('=');
      if (eq <= 0) {
        throw new TypeConversionException("label '" + pair + "' must be key=value");
      }
      String key = pair.substring(0, eq);
      if (labels.put(key, pair.substring(eq + 1)) != null) {
        throw new TypeConversionException("label '" + key + "' is given more than once");
      }
    }
    return labels;
  }

  public static RestartPolicy restartPolicy(String text) {
    return switch (text.strip().toLowerCase(Locale.ROOT).replace('_', '-')) {
      case "always" -> RestartPolicy.ALWAYS;
      case "on-failure" -> RestartPolicy.ON_FAILURE;
      case "never" -> RestartPolicy.NEVER;
      default -> throw new TypeConversionException(
          "'" + text + "' is not a restart policy (use always, on-failure or never)");
    };
  }

  public static Phase phase(String text) {
    String name = text.strip().toUpperCase(Locale.ROOT);
    for (Phase p : Phase.values()) {
      if (p != Phase.UNRECOGNIZED && p != Phase.PHASE_UNSPECIFIED && p.name().equals(name)) {
        return p;
      }
    }
    throw new TypeConversionException("'" + text + "' is not a phase (use one of "
        + Arrays.stream(Phase.values())
            .filter(p -> p != Phase.UNRECOGNIZED && p != Phase.PHASE_UNSPECIFIED)
            .map(p -> p.name().toLowerCase(Locale.ROOT))
            .collect(Collectors.joining(", ")) + ")");
  }

  public static String requestId(String text) {
    if (!REQUEST_ID.matcher(text).matches()) {
      throw new TypeConversionException("request id '" + text
          + "' must be 1 to 128 characters of A-Z a-z 0-9 . _ -");
    }
    return text;
  }

  public static int positive(String option, String text) {
    try {
      int n = Integer.parseInt(text.strip());
      if (n > 0) return n;
    } catch (NumberFormatException e) {
      // same message as a non-positive number
    }
    throw new TypeConversionException("'" + text + "' is not a whole number above zero");
  }

  static final class RestartPolicyConverter implements ITypeConverter<RestartPolicy> {
    @Override
    public RestartPolicy convert(String value) {
      return restartPolicy(value);
    }
  }

  static final class PhaseConverter implements ITypeConverter<Phase> {
    @Override
    public Phase convert(String value) {
      return phase(value);
    }
  }

  static final class RequestIdConverter implements ITypeConverter<String> {
    @Override
    public String convert(String value) {
      return requestId(value);
    }
  }

  /** A duration, or 0 for none. */
  static final class DurationOrZeroConverter implements ITypeConverter<Duration> {
    @Override
    public Duration convert(String value) {
      try {
        return Durations.parseOrZero(value);
      } catch (IllegalArgumentException e) {
        throw new TypeConversionException(e.getMessage());
      }
    }
  }

  static final class DurationConverter implements ITypeConverter<Duration> {
    @Override
    public Duration convert(String value) {
      try {
        return Durations.parse(value);
      } catch (IllegalArgumentException e) {
        throw new TypeConversionException(e.getMessage());
      }
    }
  }

  static final class CpusConverter implements ITypeConverter<Integer> {
    @Override
    public Integer convert(String value) {
      return positive("--cpus", value);
    }
  }

  static final class DiskConverter implements ITypeConverter<Integer> {
    @Override
    public Integer convert(String value) {
      return positive("--disk", value);
    }
  }

  static final class MemoryConverter implements ITypeConverter<Integer> {
    @Override
    public Integer convert(String value) {
      return positive("--memory", value);
    }
  }

  /** --tail: a number of lines, 0 or more. */
  static final class TailConverter implements ITypeConverter<Integer> {
    @Override
    public Integer convert(String value) {
      if (value.strip().equals("0")) return 0;
      return positive("--tail", value);
    }
  }
}
