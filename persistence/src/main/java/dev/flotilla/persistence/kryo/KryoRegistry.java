package dev.flotilla.persistence.kryo;

import com.esotericsoftware.kryo.Kryo;
import com.esotericsoftware.kryo.Serializer;
import com.esotericsoftware.kryo.serializers.CompatibleFieldSerializer;
import com.typesafe.config.Config;
import com.typesafe.config.ConfigException;
import com.typesafe.config.ConfigObject;
import com.typesafe.config.ConfigValue;
import com.typesafe.config.ConfigValueType;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The registrations read from {@code flotilla.serialization.kryo.classes}: a map from fully
 * qualified class name (nested classes with {@code $}) to a stable id &ge; 1000.
 */
public final class KryoRegistry {
  public static final String CLASSES_PATH = "flotilla.serialization.kryo.classes";
  /** Ids below this are Kryo's (0–9) and this module's built-ins (10–999). */
  public static final int FIRST_MODULE_ID = 1000;

  /** One configured registration. */
  public record Entry(int id, Class<?> type) {}

  private final List<Entry> entries;

  private KryoRegistry(List<Entry> entries) {
    this.entries = entries;
  }

  public List<Entry> entries() {
    return entries;
  }

  /** Reads and validates the registrations; fails with a message naming the offending key. */
  public static KryoRegistry fromConfig(Config config, ClassLoader classLoader) {
    if (!config.hasPath(CLASSES_PATH)) {
      return new KryoRegistry(List.of());
    }
    ConfigObject classes = config.getObject(CLASSES_PATH);
    Map<Integer, String> byId = new TreeMap<>();
    List<Entry> entries = new ArrayList<>();
    for (Map.Entry<String, ConfigValue> e : classes.entrySet()) {
      String className = e.getKey();
      ConfigValue v = e.getValue();
      String where = CLASSES_PATH + ".\"" + className + "\"";
      if (v.valueType() != ConfigValueType.NUMBER) {
        throw new ConfigException.BadValue(v.origin(), where, "expected an integer id, got " + v.render());
      }
      int id = ((Number) v.unwrapped()).intValue();
      if (id < FIRST_MODULE_ID) {
        throw new ConfigException.BadValue(
            v.origin(), where,
            "id " + id + " is reserved (0-9 Kryo, 10-999 flotilla persistence built-ins); use your module's block >= 1000");
      }
      String previous = byId.put(id, className);
      if (previous != null) {
        throw new ConfigException.BadValue(
            v.origin(), where, "id " + id + " is already used by " + previous + "; ids must be unique");
      }
      Class<?> type;
      try {
        type = Class.forName(className, false, classLoader);
      } catch (ClassNotFoundException ex) {
        throw new ConfigException.BadValue(
            v.origin(), where,
            "class not found (use '$' for nested classes, e.g. \"a.b.Outer$Inner\"); remove the entry only if"
                + " no stored bytes can contain it",
            ex);
      }
      if (type.isInterface() || (Modifier.isAbstract(type.getModifiers()) && !type.isEnum())) {
        throw new ConfigException.BadValue(
            v.origin(), where,
            "register concrete classes (the records of a sealed interface), not interfaces or abstract classes");
      }
      entries.add(new Entry(id, type));
    }
    entries.sort((a, b) -> Integer.compare(a.id(), b.id()));
    return new KryoRegistry(Collections.unmodifiableList(entries));
  }

  /** Registers every entry with the serializer its kind calls for. */
  @SuppressWarnings({"unchecked", "rawtypes"})
  void applyTo(Kryo kryo) {
    for (Entry e : entries) {
      Class<?> type = e.type();
      Serializer<?> serializer;
      if (type.isRecord()) {
        serializer = new RecordSerializer<>(type);
      } else if (type.isEnum()) {
        serializer = new EnumNameSerializer(type);
      } else {
        CompatibleFieldSerializer.CompatibleFieldSerializerConfig cfg =
            new CompatibleFieldSerializer.CompatibleFieldSerializerConfig();
        cfg.setChunkedEncoding(true); // lets old readers skip fields added later
        serializer = new CompatibleFieldSerializer<>(kryo, type, cfg);
      }
      kryo.register(type, serializer, e.id());
    }
  }
}
