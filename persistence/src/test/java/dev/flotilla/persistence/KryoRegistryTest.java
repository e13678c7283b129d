package dev.flotilla.persistence;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigFactory;
import dev.flotilla.persistence.kryo.KryoRegistry;
import dev.flotilla.persistence.testdomain.Shapes;
import org.junit.jupiter.api.Test;

class KryoRegistryTest {
  private static KryoRegistry parse(String classes) {
    return KryoRegistry.fromConfig(
        ConfigFactory.parseString("flotilla.serialization.kryo.classes {" + classes + "}"),
        KryoRegistryTest.class.getClassLoader());
  }

  private static String failure(String classes) {
    return assertThrows(ConfigException.class, () -> parse(classes)).getMessage();
  }

  @Test
  void readsNestedClassNamesWithDollar() {
    KryoRegistry r = parse("\"dev.flotilla.persistence.testdomain.Shapes$Circle\" = 1234");
    assertEquals(new KryoRegistry.Entry(1234, Shapes.Circle.class), r.entries().get(0));
  }

  @Test
  void rejectsReservedIds() {
    String m = failure("\"dev.flotilla.persistence.testdomain.Shapes$Circle\" = 999");
    assertTrue(m.contains("reserved"), m);
  }

  @Test
  void rejectsDuplicateIds() {
    String m =
        failure(
            "\"dev.flotilla.persistence.testdomain.Shapes$Circle\" = 1500\n"
                + "\"dev.flotilla.persistence.testdomain.Shapes$Square\" = 1500");
    assertTrue(m.contains("already used"), m);
  }

  @Test
  void rejectsMissingClassesAndInterfaces() {
    String missing = failure("\"dev.flotilla.nope.Gone\" = 1500");
    assertTrue(missing.contains("dev.flotilla.nope.Gone") && missing.contains("not found"), missing);
    String iface = failure("\"dev.flotilla.persistence.testdomain.Shapes$Shape\" = 1501");
    assertTrue(iface.contains("concrete"), iface);
  }
}
