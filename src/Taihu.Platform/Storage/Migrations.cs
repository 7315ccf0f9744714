namespace Taihu.Platform.Storage;

/// <summary>
/// The schema, as numbered steps applied in order on start. A step once released is never edited: a change is a
/// new step. Placeholders: {id} auto-numbered key, {blob}, {bool}, {double}, and {clustered} after a table whose
/// rows should be stored in primary-key order (SQLite's WITHOUT ROWID; PostgreSQL has no such option).
/// </summary>
internal static class Migrations
{
    public static readonly (int Version, string Name, string Sql)[] Steps =
    [
        (1, "tenants, users, devices, credentials, telemetry, attributes, audit", """
        CREATE TABLE tenants (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            created_time BIGINT NOT NULL,
            ttl_days INTEGER NULL
        );
        CREATE UNIQUE INDEX tenants_title ON tenants (title);

        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            email TEXT NOT NULL,
            authority TEXT NOT NULL,
            first_name TEXT NULL,
            last_name TEXT NULL,
            password_hash TEXT NULL,
            activation_token TEXT NULL,
            token_version INTEGER NOT NULL DEFAULT 0,
            failed_logins INTEGER NOT NULL DEFAULT 0,
            locked_until BIGINT NOT NULL DEFAULT 0,
            created_time BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX users_email ON users (email);
        CREATE UNIQUE INDEX users_activation ON users (activation_token);

        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            authority TEXT NOT NULL,
            key_hash TEXT NOT NULL,
            created_time BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);

        CREATE TABLE device_profiles (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT NULL,
            is_default {bool} NOT NULL,
            provision_type TEXT NOT NULL,
            provision_key TEXT NULL,
            provision_secret TEXT NULL,
            inactivity_timeout_ms BIGINT NOT NULL,
            created_time BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX device_profiles_name ON device_profiles (tenant_id, name);
        CREATE UNIQUE INDEX device_profiles_key ON device_profiles (provision_key);

        CREATE TABLE devices (
            seq {id},
            id TEXT NOT NULL,
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            label TEXT NULL,
            profile_id TEXT NOT NULL REFERENCES device_profiles (id),
            device_group TEXT NULL,
            is_gateway {bool} NOT NULL,
            gateway_id TEXT NULL,
            created_time BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX devices_id ON devices (id);
        CREATE UNIQUE INDEX devices_name ON devices (tenant_id, name);

        CREATE TABLE device_credentials (
            device_id TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
            credentials_type TEXT NOT NULL,
            lookup TEXT NOT NULL,
            credentials_id TEXT NULL,
            client_id TEXT NULL,
            user_name TEXT NULL,
            secret_hash TEXT NULL,
            certificate TEXT NULL
        );
        CREATE UNIQUE INDEX device_credentials_lookup ON device_credentials (lookup);

        CREATE TABLE ts_keys (
            id {id},
            name TEXT NOT NULL
        );
        CREATE UNIQUE INDEX ts_keys_name ON ts_keys (name);

        CREATE TABLE ts_kv (
            device_seq BIGINT NOT NULL,
            key_id BIGINT NOT NULL,
            ts BIGINT NOT NULL,
            value_type INTEGER NOT NULL,
            bool_v {bool} NULL,
            long_v BIGINT NULL,
            dbl_v {double} NULL,
            str_v TEXT NULL,
            PRIMARY KEY (device_seq, key_id, ts)
        ){clustered};

        CREATE TABLE ts_latest (
            device_seq BIGINT NOT NULL,
            key_id BIGINT NOT NULL,
            ts BIGINT NOT NULL,
            value_type INTEGER NOT NULL,
            bool_v {bool} NULL,
            long_v BIGINT NULL,
            dbl_v {double} NULL,
            str_v TEXT NULL,
            PRIMARY KEY (device_seq, key_id)
        ){clustered};

        CREATE TABLE attributes (
            device_seq BIGINT NOT NULL,
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            last_update_ts BIGINT NOT NULL,
            value_type INTEGER NOT NULL,
            bool_v {bool} NULL,
            long_v BIGINT NULL,
            dbl_v {double} NULL,
            str_v TEXT NULL,
            PRIMARY KEY (device_seq, scope, key)
        );

        CREATE TABLE audit_log (
            seq {id},
            id TEXT NOT NULL,
            tenant_id TEXT NULL,
            user_id TEXT NULL,
            user_name TEXT NULL,
            action_type TEXT NOT NULL,
            entity_type TEXT NULL,
            entity_id TEXT NULL,
            entity_name TEXT NULL,
            action_status TEXT NOT NULL,
            action_failure_details TEXT NULL,
            created_time BIGINT NOT NULL
        );
        CREATE INDEX audit_log_tenant ON audit_log (tenant_id, created_time);

        CREATE TABLE settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """),
        (2, "broker state: retained messages and persistent MQTT sessions", """
        CREATE TABLE mqtt_retained (
            ns TEXT NOT NULL,
            topic TEXT NOT NULL,
            payload {blob} NOT NULL,
            qos INTEGER NOT NULL,
            properties {blob} NULL,
            received_time BIGINT NOT NULL,
            PRIMARY KEY (ns, topic)
        );

        CREATE TABLE mqtt_sessions (
            ns TEXT NOT NULL,
            client_id TEXT NOT NULL,
            expiry_interval BIGINT NOT NULL,
            incoming_qos2 TEXT NULL,
            saved_time BIGINT NOT NULL,
            PRIMARY KEY (ns, client_id)
        );

        CREATE TABLE mqtt_session_subscriptions (
            ns TEXT NOT NULL,
            client_id TEXT NOT NULL,
            topic_filter TEXT NOT NULL,
            qos INTEGER NOT NULL,
            no_local {bool} NOT NULL,
            retain_as_published {bool} NOT NULL,
            retain_handling INTEGER NOT NULL,
            subscription_id BIGINT NOT NULL,
            PRIMARY KEY (ns, client_id, topic_filter),
            FOREIGN KEY (ns, client_id) REFERENCES mqtt_sessions (ns, client_id) ON DELETE CASCADE
        );

        CREATE TABLE mqtt_session_messages (
            ns TEXT NOT NULL,
            client_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            packet_id INTEGER NOT NULL,
            released {bool} NOT NULL,
            qos INTEGER NOT NULL,
            retain_flag {bool} NOT NULL,
            subscription_ids TEXT NULL,
            topic TEXT NOT NULL,
            payload {blob} NOT NULL,
            message_qos INTEGER NOT NULL,
            message_retain {bool} NOT NULL,
            properties {blob} NULL,
            received_time BIGINT NOT NULL,
            PRIMARY KEY (ns, client_id, seq),
            FOREIGN KEY (ns, client_id) REFERENCES mqtt_sessions (ns, client_id) ON DELETE CASCADE
        );
        """),
        (3, "per-minute telemetry rollups", """
        CREATE TABLE ts_rollup_1m (
            device_seq BIGINT NOT NULL,
            key_id BIGINT NOT NULL,
            minute BIGINT NOT NULL,
            cnt BIGINT NOT NULL,
            cnt_l BIGINT NOT NULL,
            cnt_d BIGINT NOT NULL,
            min_l BIGINT NULL,
            max_l BIGINT NULL,
            min_d {double} NULL,
            max_d {double} NULL,
            sum_l_hi BIGINT NOT NULL,
            sum_l_lo BIGINT NOT NULL,
            sum_d {double} NOT NULL,
            PRIMARY KEY (device_seq, key_id, minute)
        ){clustered};
        """),
        // A session belongs to the identity that made it (ClientIdentity.SessionOwner): the owner joins the key.
        // The tables are rebuilt because a primary key cannot be changed in place in SQLite. Sessions of the
        // default namespace (anonymous clients, which have no owner) are kept with owner ''. Those of a tenant's
        // namespace were made by devices whose id was not recorded: kept, no device could ever resume them and they
        // would only fill up, so they are dropped; the device gets Session Present 0 and subscribes again.
        (4, "MQTT sessions keyed by owner as well as client id", """
        CREATE TABLE mqtt_sessions_v4 (
            ns TEXT NOT NULL,
            session_owner TEXT NOT NULL,
            client_id TEXT NOT NULL,
            expiry_interval BIGINT NOT NULL,
            incoming_qos2 TEXT NULL,
            saved_time BIGINT NOT NULL,
            PRIMARY KEY (ns, session_owner, client_id)
        );
        INSERT INTO mqtt_sessions_v4 (ns, session_owner, client_id, expiry_interval, incoming_qos2, saved_time)
            SELECT ns, '', client_id, expiry_interval, incoming_qos2, saved_time FROM mqtt_sessions WHERE ns = '';

        CREATE TABLE mqtt_session_subscriptions_v4 (
            ns TEXT NOT NULL,
            session_owner TEXT NOT NULL,
            client_id TEXT NOT NULL,
            topic_filter TEXT NOT NULL,
            qos INTEGER NOT NULL,
            no_local {bool} NOT NULL,
            retain_as_published {bool} NOT NULL,
            retain_handling INTEGER NOT NULL,
            subscription_id BIGINT NOT NULL,
            PRIMARY KEY (ns, session_owner, client_id, topic_filter),
            FOREIGN KEY (ns, session_owner, client_id) REFERENCES mqtt_sessions_v4 (ns, session_owner, client_id) ON DELETE CASCADE
        );
        INSERT INTO mqtt_session_subscriptions_v4 (ns, session_owner, client_id, topic_filter, qos, no_local, retain_as_published, retain_handling, subscription_id)
            SELECT ns, '', client_id, topic_filter, qos, no_local, retain_as_published, retain_handling, subscription_id FROM mqtt_session_subscriptions WHERE ns = '';

        CREATE TABLE mqtt_session_messages_v4 (
            ns TEXT NOT NULL,
            session_owner TEXT NOT NULL,
            client_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            packet_id INTEGER NOT NULL,
            released {bool} NOT NULL,
            qos INTEGER NOT NULL,
            retain_flag {bool} NOT NULL,
            subscription_ids TEXT NULL,
            topic TEXT NOT NULL,
            payload {blob} NOT NULL,
            message_qos INTEGER NOT NULL,
            message_retain {bool} NOT NULL,
            properties {blob} NULL,
            received_time BIGINT NOT NULL,
            PRIMARY KEY (ns, session_owner, client_id, seq),
            FOREIGN KEY (ns, session_owner, client_id) REFERENCES mqtt_sessions_v4 (ns, session_owner, client_id) ON DELETE CASCADE
        );
        INSERT INTO mqtt_session_messages_v4 (ns, session_owner, client_id, seq, packet_id, released, qos, retain_flag, subscription_ids,
                topic, payload, message_qos, message_retain, properties, received_time)
            SELECT ns, '', client_id, seq, packet_id, released, qos, retain_flag, subscription_ids,
                topic, payload, message_qos, message_retain, properties, received_time FROM mqtt_session_messages WHERE ns = '';

        DROP TABLE mqtt_session_messages;
        DROP TABLE mqtt_session_subscriptions;
        DROP TABLE mqtt_sessions;
        ALTER TABLE mqtt_sessions_v4 RENAME TO mqtt_sessions;
        ALTER TABLE mqtt_session_subscriptions_v4 RENAME TO mqtt_session_subscriptions;
        ALTER TABLE mqtt_session_messages_v4 RENAME TO mqtt_session_messages;
        """),
        (5, "one-use refresh tokens", """
        CREATE TABLE refresh_tokens (
            jti TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            expires_time BIGINT NOT NULL
        );
        CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
        """),
        (6, "tenants' broker users", """
        CREATE TABLE mqtt_users (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            user_name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            rules TEXT NOT NULL,
            created_time BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX mqtt_users_name ON mqtt_users (user_name);
        CREATE INDEX mqtt_users_tenant ON mqtt_users (tenant_id);
        """),
        (7, "publish rate limits per device profile", """
        ALTER TABLE device_profiles ADD COLUMN max_publish_rate INTEGER NULL;
        ALTER TABLE device_profiles ADD COLUMN max_publish_bytes_rate BIGINT NULL;
        """),
        // Persistent RPC calls (ThingsBoard's rpc table): the request, its state and the device's reply. request_id
        // is what the device sees, counted per device; seq keeps the order calls were made in.
        (8, "persistent RPC calls", """
        CREATE TABLE rpc_calls (
            seq {id},
            id TEXT NOT NULL,
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
            request_id INTEGER NOT NULL,
            method TEXT NOT NULL,
            params TEXT NOT NULL,
            oneway {bool} NOT NULL,
            timeout_ms BIGINT NOT NULL,
            expiration_time BIGINT NOT NULL,
            retries INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            status TEXT NOT NULL,
            response TEXT NULL,
            additional_info TEXT NULL,
            created_time BIGINT NOT NULL,
            updated_time BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX rpc_calls_id ON rpc_calls (id);
        CREATE INDEX rpc_calls_device ON rpc_calls (device_id, seq);
        CREATE INDEX rpc_calls_tenant_device_created ON rpc_calls (tenant_id, device_id, created_time);
        """),
        // Alarms (ThingsBoard's alarm table). The partial unique index is the storage's half of "one active alarm
        // per originator and type"; the owner of the device's alarms (AlarmService) is the other, so that a raise
        // and a clear of one alarm never interleave. Severity is stored as its rank (0 = CRITICAL) so that the
        // highest is MIN(severity). A user deleted unassigns the alarms assigned to them. version makes every update
        // conditional on the row being as it was read (processes sharing the database).
        (9, "alarms", """
        CREATE TABLE alarms (
            seq {id},
            id TEXT NOT NULL,
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            originator_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
            originator_type TEXT NOT NULL,
            type TEXT NOT NULL,
            severity INTEGER NOT NULL,
            acknowledged {bool} NOT NULL,
            cleared {bool} NOT NULL,
            start_ts BIGINT NOT NULL,
            end_ts BIGINT NOT NULL,
            ack_ts BIGINT NOT NULL,
            clear_ts BIGINT NOT NULL,
            assign_ts BIGINT NOT NULL,
            assignee_id TEXT NULL REFERENCES users (id) ON DELETE SET NULL,
            details TEXT NOT NULL,
            propagate {bool} NOT NULL,
            propagate_to_owner {bool} NOT NULL,
            propagate_to_tenant {bool} NOT NULL,
            propagate_relation_types TEXT NOT NULL,
            created_time BIGINT NOT NULL,
            version BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX alarms_id ON alarms (id);
        CREATE UNIQUE INDEX alarms_one_active ON alarms (originator_id, type) WHERE NOT cleared;
        CREATE INDEX alarms_tenant_created ON alarms (tenant_id, created_time);
        CREATE INDEX alarms_originator_created ON alarms (originator_id, created_time);
        CREATE INDEX alarms_assignee ON alarms (assignee_id);
        """),
        // A profile's alarm rules (profileData.alarms) as the JSON the user saved, so that GET returns it unchanged;
        // the server parses it on save (refusing a bad rule) and again when it compiles the rules.
        (10, "alarm rules per device profile", """
        ALTER TABLE device_profiles ADD COLUMN alarms TEXT NULL;
        """),
        // What rules and integrations must see of each commit, written in the commit's transaction (Events.EventLog),
        // and how far each of them has taken it.
        (11, "event log, its consumers' positions, alarm rules' state", """
        CREATE TABLE event_log (
            seq {id},
            kind INTEGER NOT NULL,
            created_time BIGINT NOT NULL,
            body {blob} NOT NULL
        );

        CREATE TABLE event_cursors (
            consumer TEXT PRIMARY KEY,
            position BIGINT NOT NULL
        );

        CREATE TABLE rule_states (
            device_id TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
            state {blob} NOT NULL,
            updated_time BIGINT NOT NULL
        );
        """),
        // Integrations out (Integrations/): each tenant's targets, the durable outbox the "integrations" event consumer
        // fills in the transaction that saves its cursor, and the dead letters. The outbox row holds the body as
        // sent, so a retry sends the same bytes (and the same signature); device_id orders a device's events.
        (12, "integrations, their outbox and dead letters", """
        CREATE TABLE integrations (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            enabled {bool} NOT NULL,
            configuration TEXT NOT NULL,
            created_time BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX integrations_name ON integrations (tenant_id, name);

        CREATE TABLE integration_outbox (
            seq {id},
            integration_id TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
            device_id TEXT NOT NULL,
            device_name TEXT NOT NULL,
            device_type TEXT NOT NULL,
            event_type TEXT NOT NULL,
            body {blob} NOT NULL,
            created_time BIGINT NOT NULL,
            attempts INTEGER NOT NULL,
            first_attempt BIGINT NOT NULL,
            next_attempt BIGINT NOT NULL,
            last_status INTEGER NOT NULL,
            last_error TEXT NULL
        );
        CREATE INDEX integration_outbox_device ON integration_outbox (integration_id, device_id, seq);

        CREATE TABLE integration_dead_letters (
            seq {id},
            id TEXT NOT NULL,
            integration_id TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
            device_id TEXT NOT NULL,
            device_name TEXT NOT NULL,
            device_type TEXT NOT NULL,
            event_type TEXT NOT NULL,
            body {blob} NOT NULL,
            created_time BIGINT NOT NULL,
            reason TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            last_status INTEGER NOT NULL,
            dead_time BIGINT NOT NULL
        );
        CREATE UNIQUE INDEX integration_dead_letters_id ON integration_dead_letters (id);
        CREATE INDEX integration_dead_letters_integration ON integration_dead_letters (integration_id, seq);
        """),
        // The delivery reads an integration's oldest rows in seq order (IntegrationDelivery's window): an index range
        // instead of a scan of the whole outbox per read, which made a backlog drain slower the larger it was. Each
        // integration's counters (events sent, failed attempts, events dead-lettered) are kept with it, added to in
        // the transactions that delete, retry or dead-letter outbox rows, so they survive a restart exactly.
        (13, "the integration outbox in seq order, integrations' counters", """
        CREATE INDEX integration_outbox_order ON integration_outbox (integration_id, seq);
        ALTER TABLE integrations ADD COLUMN sent BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE integrations ADD COLUMN failed BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE integrations ADD COLUMN dead BIGINT NOT NULL DEFAULT 0;
        """),
        // A user's own settings as ThingsBoard keeps them, a JSON object (the console's "lang" and "timeZone"), so
        // that they follow the user to another browser.
        (14, "users' additional info", """
        ALTER TABLE users ADD COLUMN additional_info TEXT NULL;
        """),
    ];
}
