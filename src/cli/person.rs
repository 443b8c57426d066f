//! Enrolled people: `person add|list|remove`.

use std::collections::BTreeMap;
use std::fmt::{self, Display};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::Serialize;

use super::{Output, Places, Skipped, open_pool, open_store, read};
use crate::access::shared_gallery;
use crate::access::{FloorAccess, FloorRules, floors, is_administrator};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::face::Which;
use crate::face::gallery;
use crate::store::{Disabled, Profile, Store, VisitorPass};

#[derive(Debug, clap::Args)]
pub struct PersonArgs {
    #[command(subcommand)]
    action: PersonAction,
    #[command(flatten)]
    pub(super) places: Places,
}

#[derive(Debug, Subcommand)]
enum PersonAction {
    /// Enrol a person from photos: each must show exactly one usable face, is copied into the
    /// person's folder and embedded at once (photos of an already enrolled person add to theirs)
    Add {
        /// The name shown at login and used in `web.admins`: 1 to 64 letters, digits, - or _
        name: String,
        photos: Vec<PathBuf>,
        /// Also make them an administrator (they may then enrol others from /admin)
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        output: Output,
    },
    /// The enrolled people, their number of photos, and who is an administrator
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Remove a person: their folder of photos, their administrator mark and their sessions
    Remove { name: String },
    /// Turn a person's face login off: their sessions end at once, their logins are refused
    Disable { name: String },
    /// Turn a person's face login on again (also after it was turned off by failed attempts)
    Enable { name: String },
    /// Show or set who may go where and when: only the options given change
    Access {
        name: String,
        /// The name shown to them ("Ada Lovelace"); "" clears it
        #[arg(long)]
        display_name: Option<String>,
        /// Where a kiosk sends them, a floor they may always reach; "none" clears it
        #[arg(long, value_name = "FLOOR|none")]
        home: Option<String>,
        /// The floors they may reach, such as 0,3,4; "all" for every floor
        #[arg(long, value_name = "LIST|all")]
        floors: Option<String>,
        /// When they may ride, such as "weekdays 07:00-20:00" (repeat for more windows)
        #[arg(long, value_name = "WINDOW")]
        hours: Vec<String>,
        /// At any time (clears the hours)
        #[arg(long, conflicts_with = "hours")]
        any_time: bool,
        /// A visitor: only what a current pass gives
        #[arg(long, conflicts_with = "resident")]
        visitor: bool,
        /// A resident: their floors and home floor
        #[arg(long)]
        resident: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Give a person (a visitor) floors for a while
    Pass {
        name: String,
        /// The floors, such as 3 or 3,4
        #[arg(long, value_name = "LIST")]
        floors: String,
        /// How long from now: 90m, 4h, 2d
        #[arg(long = "for", value_name = "DURATION")]
        valid_for: String,
        #[command(flatten)]
        output: Output,
    },
    /// End a visitor pass now
    RevokePass { id: i64 },
}

pub fn person(settings: &Settings, args: PersonArgs) -> Result<()> {
    let store = open_store(settings)?;
    match args.action {
        PersonAction::Add {
            name,
            photos,
            admin,
            output,
        } => output.print(&add(settings, &store, &name, &photos, admin)?),
        PersonAction::List { output } => output.print(&list(settings, &store)?),
        PersonAction::Remove { name } => remove(settings, &store, &name),
        PersonAction::Disable { name } => set_face_login(settings, &store, &name, false),
        PersonAction::Enable { name } => set_face_login(settings, &store, &name, true),
        PersonAction::Access {
            name,
            display_name,
            home,
            floors,
            hours,
            any_time,
            visitor,
            resident,
            output,
        } => {
            enrolled(settings, &name)?;
            let mut profile = store.profile(&name)?;
            let before = profile.clone();
            if let Some(display_name) = display_name {
                profile.display_name = Some(display_name);
            }
            match home.as_deref() {
                Some("none") => profile.home_floor = None,
                Some(floor) => profile.home_floor = Some(parse_floor(floor)?),
                None => {}
            }
            match floors.as_deref() {
                Some("all") => profile.floors = None,
                Some(list) => profile.floors = Some(parse_floors(list)?),
                None => {}
            }
            if any_time {
                profile.hours.clear();
            } else if !hours.is_empty() {
                profile.hours = hours;
            }
            if visitor || resident {
                profile.visitor = visitor;
            }
            if profile != before {
                let rules = FloorRules::from_settings(settings);
                floors::change_profile(&store, &rules, &name, profile, "cli", SystemClock.now())?;
            }
            output.print(&access_now(settings, &store, &name)?)
        }
        PersonAction::Pass {
            name,
            floors,
            valid_for,
            output,
        } => {
            enrolled(settings, &name)?;
            let (now, rules) = (SystemClock.now(), FloorRules::from_settings(settings));
            let valid = (now, now.saturating_add(parse_duration(&valid_for)?));
            floors::issue_pass(
                &store,
                &rules,
                &name,
                &parse_floors(&floors)?,
                valid,
                "cli",
                now,
            )?;
            output.print(&access_now(settings, &store, &name)?)
        }
        PersonAction::RevokePass { id } => {
            if !floors::revoke_pass(&store, id, "cli", SystemClock.now())? {
                bail!("no pass {id} is in force");
            }
            println!("Pass {id} has ended.");
            Ok(())
        }
    }
}

fn enrolled(settings: &Settings, name: &str) -> Result<()> {
    if !gallery::valid_person_name(name) || !settings.gallery.join(name).is_dir() {
        bail!(
            "no one called {name} is enrolled in {}",
            settings.gallery.display()
        );
    }
    Ok(())
}

fn parse_floor(text: &str) -> Result<i32> {
    text.trim()
        .parse()
        .with_context(|| format!("{text:?} is not a floor number"))
}

fn parse_floors(list: &str) -> Result<Vec<i32>> {
    list.split(',').map(parse_floor).collect()
}

/// "90m", "4h", "2d", "3600s" or plain seconds.
fn parse_duration(text: &str) -> Result<i64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let number: i64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration such as 90m, 4h or 2d"))?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => bail!("{text:?} is not a duration such as 90m, 4h or 2d"),
    };
    Ok(number.saturating_mul(unit))
}

/// A person's access as `person access` and `person pass` print it.
#[derive(Debug, Serialize)]
struct AccessNow {
    person: String,
    profile: Profile,
    passes: Vec<VisitorPass>,
    now: FloorAccess,
}

fn access_now(settings: &Settings, store: &Store, name: &str) -> Result<AccessNow> {
    let now = SystemClock.now();
    let profile = store.profile(name)?;
    let passes = store.passes(name, now)?;
    let access = FloorAccess::decide(&FloorRules::from_settings(settings), &profile, &passes, now);
    Ok(AccessNow {
        person: name.to_string(),
        profile,
        passes,
        now: access,
    })
}

impl Display for AccessNow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |floors: &[i32]| {
            floors
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let profile = &self.profile;
        writeln!(
            f,
            "{}{}: {}",
            self.person,
            profile
                .display_name
                .as_ref()
                .map_or(String::new(), |n| format!(" ({n})")),
            if profile.visitor {
                "visitor"
            } else {
                "resident"
            }
        )?;
        if !profile.visitor {
            writeln!(
                f,
                "  floors: {}",
                profile.floors.as_deref().map_or("all".into(), list)
            )?;
        }
        writeln!(
            f,
            "  home floor: {}",
            profile.home_floor.map_or("none".into(), |h| h.to_string())
        )?;
        writeln!(
            f,
            "  hours: {}",
            if profile.hours.is_empty() {
                "any time".into()
            } else {
                profile.hours.join(", ")
            }
        )?;
        for pass in &self.passes {
            writeln!(
                f,
                "  pass {}: floors {} until {} (Unix time)",
                pass.id,
                list(&pass.floors),
                pass.expires_at
            )?;
        }
        writeln!(f, "  may reach now: {}", list(&self.now.floors))
    }
}

/// One enrolled person.
#[derive(Debug, Serialize)]
struct Listed {
    name: String,
    photos: usize,
    admin: bool,
    /// why their face login is off, when it is
    #[serde(skip_serializing_if = "Option::is_none")]
    face_login_off: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct People {
    people: Vec<Listed>,
    #[serde(skip)]
    gallery: PathBuf,
}

fn list(settings: &Settings, store: &Store) -> Result<People> {
    let people = if settings.gallery.exists() {
        gallery::scan(&settings.gallery)
            .with_context(|| format!("reading the gallery {}", settings.gallery.display()))?
    } else {
        BTreeMap::new()
    };
    let people = people
        .into_iter()
        .map(|(name, photos)| {
            let admin = is_administrator(&settings.web.admins, store, &name)?;
            let face_login_off = store.standing(&name)?.disabled.map(Disabled::as_str);
            Ok(Listed {
                name,
                photos: photos.len(),
                admin,
                face_login_off,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(People {
        people,
        gallery: settings.gallery.clone(),
    })
}

impl Display for People {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.people.is_empty() {
            writeln!(
                f,
                "No one is enrolled in {}: add someone with `facelift person add NAME PHOTO... --admin`.",
                self.gallery.display()
            )?;
        }
        for person in &self.people {
            let role = if person.admin { "  administrator" } else { "" };
            let off = person
                .face_login_off
                .map_or(String::new(), |why| format!("  face login off ({why})"));
            writeln!(f, "{:<24} {} photos{role}{off}", person.name, person.photos)?;
        }
        Ok(())
    }
}

fn remove(settings: &Settings, store: &Store, name: &str) -> Result<()> {
    if !gallery::valid_person_name(name) {
        bail!("a name is 1 to 64 letters, digits, '-' or '_'");
    }
    let folder = settings.gallery.join(name);
    let had_photos = folder.is_dir();
    if had_photos {
        std::fs::remove_dir_all(&folder)
            .with_context(|| format!("removing {}", folder.display()))?;
    }
    let was_admin = store.is_admin(name)?;
    store.set_admin(name, false)?;
    let shared = shared_gallery::is_shared(store);
    let was_shared = shared && shared_gallery::removed(store, name, SystemClock.now())?;
    store.forget_person(name)?;
    if !had_photos && !was_admin && !was_shared {
        bail!(
            "no one called {name} is enrolled in {}",
            settings.gallery.display()
        );
    }
    if shared {
        println!(
            "Removed {name}, and ended their sessions; the running instances forget their face now."
        );
    } else {
        println!(
            "Removed {name}, and ended their sessions; restart the server for it to forget their face."
        );
    }
    if settings.web.admins.iter().any(|a| a == name) {
        println!("{name} is still listed in web.admins in the configuration.");
    }
    Ok(())
}

fn set_face_login(settings: &Settings, store: &Store, name: &str, enabled: bool) -> Result<()> {
    if !settings.gallery.join(name).is_dir() || !gallery::valid_person_name(name) {
        bail!(
            "no one called {name} is enrolled in {}",
            settings.gallery.display()
        );
    }
    store.set_disabled(name, (!enabled).then_some(Disabled::ByAdmin))?;
    if enabled {
        println!("{name} may log in with their face again.");
    } else {
        println!("{name}'s face login is off, and their sessions have ended.");
    }
    Ok(())
}

/// What `person add` did.
#[derive(Debug, Serialize)]
struct Added {
    person: String,
    added: Vec<PathBuf>,
    /// their photos in all
    photos: usize,
    admin: bool,
    skipped: Vec<Skipped>,
    #[serde(skip)]
    folder: PathBuf,
    #[serde(skip)]
    made_admin: bool,
}

/// Every photo checked for exactly one usable face before anything is written; the photos
/// that pass are saved and embedded into the cache, so that the server starts with them.
fn add(
    settings: &Settings,
    store: &Store,
    name: &str,
    photos: &[PathBuf],
    admin: bool,
) -> Result<Added> {
    if !gallery::valid_person_name(name) {
        bail!(
            "a name is 1 to 64 letters, digits, '-' or '_' (it names their folder in the gallery)"
        );
    }
    let already = match gallery::scan(&settings.gallery) {
        Ok(people) => people.get(name).map_or(0, Vec::len),
        Err(_) if !settings.gallery.exists() => 0,
        Err(error) => {
            return Err(error)
                .with_context(|| format!("reading the gallery {}", settings.gallery.display()));
        }
    };
    if photos.is_empty() && !(admin && already > 0) {
        bail!("give at least one photo of {name} (3 to 5, in different light, are better)");
    }
    let (mut added, mut skipped) = (Vec::new(), Vec::new());
    if !photos.is_empty() {
        let pool = open_pool(settings)?;
        let cache_key = pool.cache_key();
        let now = SystemClock.now();
        for path in photos {
            let checked = read(path).and_then(|bytes| {
                let analysis = pool.run_blocking(move |engine| {
                    engine
                        .analyze_bytes(&bytes, Which::Single)
                        .map(|a| (bytes, a))
                })??;
                Ok(analysis)
            });
            match checked {
                Ok((bytes, analysis)) => {
                    let embedding = &analysis.faces[0].embedding;
                    let saved = gallery::save_photo(
                        &settings.gallery,
                        name,
                        &bytes,
                        now,
                        (store, &cache_key, embedding),
                    )
                    .with_context(|| format!("saving {} in the gallery", path.display()))?;
                    if shared_gallery::is_shared(store) {
                        shared_gallery::enrolled(store, &cache_key, name, &saved, embedding)?;
                    }
                    added.push(saved);
                }
                Err(why) => skipped.push(Skipped {
                    photo: path.clone(),
                    why: format!("{why:#}"),
                }),
            }
        }
        if added.is_empty() {
            for skipped in &skipped {
                eprintln!("{}: {}", skipped.photo.display(), skipped.why);
            }
            bail!("no photo of {name} showed exactly one usable face; nothing was enrolled");
        }
    }
    if admin {
        store.set_admin(name, true)?;
    }
    Ok(Added {
        person: name.to_string(),
        photos: already + added.len(),
        added,
        admin: is_administrator(&settings.web.admins, store, name)?,
        skipped,
        folder: settings.gallery.join(name),
        made_admin: admin,
    })
}

impl Display for Added {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for skipped in &self.skipped {
            write!(f, "{skipped}")?;
        }
        writeln!(
            f,
            "Enrolled {}: {} photo(s) added, {} in all, in {}.",
            self.person,
            self.added.len(),
            self.photos,
            self.folder.display()
        )?;
        if self.made_admin {
            writeln!(
                f,
                "{} is an administrator: they may open /admin and enrol others from the camera.",
                self.person
            )?;
        }
        writeln!(
            f,
            "A running server picks the new photos up when restarted (scripts/run); \
             enrolments made on /admin count at once."
        )
    }
}
