//! Admin commands that work on a data dir directly or through a running server.

use std::sync::Arc;

use anyhow::Context;
use switchboard_gateway::{Config, Gateway};
use switchboard_protocol::UserInfo;
use switchboard_protocol::rest::CreateUserRequest;
use switchboard_storage::{PgStore, SqliteStore, Store};

use crate::cli::{ClientArgs, UserAddArgs};
use crate::client::{Connection, read_password};

pub async fn user_add(client: ClientArgs, args: UserAddArgs) -> anyhow::Result<()> {
    let password = read_password(args.password_stdin, &format!("Password for {}: ", args.name))?;
    let store: Arc<dyn Store> = if let Some(url) = &args.database {
        Arc::new(PgStore::connect(url).await.context("cannot open the PostgreSQL database")?)
    } else if let Some(data_dir) = &args.data_dir {
        Arc::new(
            SqliteStore::open(data_dir)
                .await
                .with_context(|| format!("cannot open the database in {}", data_dir.display()))?,
        )
    } else {
        let connection = Connection::resolve(&client).context(
            "say where to create the account: --data-dir DIR, --database URL, or --server URL \
             with an admin's login",
        )?;
        let request = CreateUserRequest {
            username: args.name,
            password,
            display_name: args.display_name,
            org: args.org,
            admin: args.admin,
        };
        let user: UserInfo = connection.http.post("/api/v1/users", &request).await?;
        println!("Created {}{}", user.username, if user.admin { " (admin)" } else { "" });
        return Ok(());
    };
    let gateway = Gateway::new(store, Config::default());
    let user = gateway
        .create_user(None, &args.name, password, &args.display_name, &args.org, args.admin)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.0.message))?;
    println!("Created {}{}", user.username, if user.admin { " (admin)" } else { "" });
    Ok(())
}
