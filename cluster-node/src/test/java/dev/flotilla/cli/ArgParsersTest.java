package dev.flotilla.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.RestartPolicy;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import picocli.CommandLine.TypeConversionException;

class ArgParsersTest {

  @Test
  void labels_are_key_value_pairs_in_order_and_values_may_be_empty_or_contain_equals() {
    assertEquals(List.of("app", "tier", "expr"), List.copyOf(
        ArgParsers.labels(List.of("app=web", "tier=", "expr=a=b")).keySet()));
    assertEquals(Map.of("app", "web", "tier", "", "expr", "a=b"),
        ArgParsers.labels(List.of("app=web", "tier=", "expr=a=b")));
    assertEquals(Map.of(), ArgParsers.labels(null));
  }

  @Test
  void a_label_without_key_or_equals_or_given_twice_is_refused() {
    assertEquals("label 'app' must be key=value",
        assertThrows(TypeConversionException.class, () -> ArgParsers.labels(List.of("app")))
            .getMessage());
    assertThrows(TypeConversionException.class, () -> ArgParsers.labels(List.of("=web")));
    assertEquals("label 'app' is given more than once",
        assertThrows(TypeConversionException.class,
            () -> ArgParsers.labels(List.of("app=a", "app=b"))).getMessage());
  }

  @Test
  void restart_policies_as_users_type_them() {
    assertEquals(RestartPolicy.ALWAYS, ArgParsers.restartPolicy("always"));
    assertEquals(RestartPolicy.ON_FAILURE, ArgParsers.restartPolicy("on-failure"));
    assertEquals(RestartPolicy.ON_FAILURE, ArgParsers.restartPolicy("ON_FAILURE"));
    assertEquals(RestartPolicy.NEVER, ArgParsers.restartPolicy("Never"));
    assertThrows(TypeConversionException.class, () -> ArgParsers.restartPolicy("sometimes"));
    assertThrows(TypeConversionException.class, () -> ArgParsers.restartPolicy("unspecified"));
  }

  @Test
  void phases_by_name_in_any_case_but_not_the_placeholders() {
    assertEquals(Phase.RUNNING, ArgParsers.phase("running"));
    assertEquals(Phase.FAILED, ArgParsers.phase("FAILED"));
    assertThrows(TypeConversionException.class, () -> ArgParsers.phase("phase_unspecified"));
    assertThrows(TypeConversionException.class, () -> ArgParsers.phase("UNRECOGNIZED"));
  }

  @Test
  void request_ids_follow_the_api_pattern() {
    assertEquals("retry-1.a_b", ArgParsers.requestId("retry-1.a_b"));
    assertThrows(TypeConversionException.class, () -> ArgParsers.requestId("has space"));
    assertThrows(TypeConversionException.class, () -> ArgParsers.requestId("x".repeat(129)));
  }

  @Test
  void counts_must_be_positive_whole_numbers() {
    assertEquals(4, ArgParsers.positive("--cpus", "4"));
    assertThrows(TypeConversionException.class, () -> ArgParsers.positive("--cpus", "0"));
    assertThrows(TypeConversionException.class, () -> ArgParsers.positive("--cpus", "-1"));
    assertThrows(TypeConversionException.class, () -> ArgParsers.positive("--memory", "1.5"));
  }

  @Test
  void durations_with_units_or_plain_seconds() {
    assertEquals(Duration.ofMillis(500), Durations.parse("500ms"));
    assertEquals(Duration.ofSeconds(10), Durations.parse("10s"));
    assertEquals(Duration.ofSeconds(10), Durations.parse("10"));
    assertEquals(Duration.ofMinutes(2), Durations.parse("2m"));
    assertThrows(IllegalArgumentException.class, () -> Durations.parse("0s"));
    assertThrows(IllegalArgumentException.class, () -> Durations.parse("ten"));
  }

  @Test
  void durations_print_short() {
    assertEquals("300ms", Durations.format(Duration.ofMillis(300)));
    assertEquals("1.5s", Durations.format(Duration.ofMillis(1500)));
    assertEquals("0s", Durations.format(Duration.ZERO));
    assertEquals("30s", Durations.format(Duration.ofSeconds(30)));
    assertEquals("1m30s", Durations.format(Duration.ofSeconds(90)));
    assertEquals("12m", Durations.format(Duration.ofSeconds(12 * 60 + 5)));
    assertEquals("2h5m", Durations.format(Duration.ofMinutes(125)));
    assertEquals("3d", Durations.format(Duration.ofDays(3).plusHours(4)));
  }

  @Test
  void endpoints() {
    assertEquals(new Endpoint("127.0.0.1", 7070), Endpoint.parse("127.0.0.1:7070"));
    assertEquals(new Endpoint("node-2", 7070), Endpoint.parse("node-2"));
    assertEquals(new Endpoint("::1", 9000), Endpoint.parse("[::1]:9000"));
    assertEquals(new Endpoint("example.org", 443), Endpoint.parse("http://example.org:443/"));
    assertEquals("[::1]:9000", Endpoint.parse("[::1]:9000").toString());
    for (String bad : new String[] {":7070", "host:", "host:x", "host:70000", "::1", "[::1"}) {
      CliFailure f = assertThrows(CliFailure.class, () -> Endpoint.parse(bad), bad);
      assertEquals(ExitCodes.USAGE, f.exitCode());
    }
  }
}
