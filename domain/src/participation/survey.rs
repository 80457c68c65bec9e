//! Surveys: the questions a survey procedure asks (single choice, multiple choice, free
//! text), the check of a participant's answers against them, and the results.
//!
//! The chosen options of an answer are plain data in its event; free texts are personal
//! data and sealed. So the results ([`tally`]) are recomputable from the log by anybody,
//! without any identity and without opening a sealed section.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Title;
use crate::newtype::token;

token!(
    /// The key of a question within its survey (`q1`, `verkehr-1`).
    QuestionKey,
    "question key",
    64
);
token!(
    /// The key of an option within its question (`ja`, `nein`, `a`).
    OptionKey,
    "option key",
    64
);

/// One question of a survey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Question {
    /// Exactly one of the options.
    Single {
        key: QuestionKey,
        text: Title,
        options: Vec<OptionKey>,
    },
    /// One or more of the options.
    Multiple {
        key: QuestionKey,
        text: Title,
        options: Vec<OptionKey>,
    },
    /// A free text (sealed, like every text a participant writes).
    FreeText { key: QuestionKey, text: Title },
}

impl Question {
    pub fn key(&self) -> &QuestionKey {
        match self {
            Self::Single { key, .. } | Self::Multiple { key, .. } | Self::FreeText { key, .. } => {
                key
            }
        }
    }

    fn options(&self) -> Option<&[OptionKey]> {
        match self {
            Self::Single { options, .. } | Self::Multiple { options, .. } => Some(options),
            Self::FreeText { .. } => None,
        }
    }
}

/// The questions of a survey, in the order they are asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Survey {
    pub questions: Vec<Question>,
}

/// The choices of one answer: for each choice question answered, the options chosen, in
/// the order the participant sent them (each once; a repeat is refused, never dropped).
pub type Choices = BTreeMap<QuestionKey, Vec<OptionKey>>;

/// Why a survey or an answer to it was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SurveyError {
    #[error("a survey has 1 to 100 questions, each key once")]
    Questions,
    #[error("question {0} needs 2 to 50 options, each once")]
    Options(String),
    #[error("the survey has no question {0}")]
    UnknownQuestion(String),
    #[error("question {0} is answered with a choice of options it does not offer, or of none")]
    UnknownOption(String),
    #[error("question {0} is answered with an option more than once")]
    RepeatedOption(String),
    #[error("question {0} takes exactly one option")]
    SingleChoice(String),
    #[error("question {0} is answered with free text, not options")]
    NotAChoice(String),
    #[error("question {0} takes options, not free text")]
    NotFreeText(String),
    #[error("an answer answers at least one question")]
    Empty,
}

impl Survey {
    pub fn check(&self) -> Result<(), SurveyError> {
        let keys: BTreeSet<&QuestionKey> = self.questions.iter().map(Question::key).collect();
        if self.questions.is_empty()
            || self.questions.len() > 100
            || keys.len() != self.questions.len()
        {
            return Err(SurveyError::Questions);
        }
        for q in &self.questions {
            if let Some(options) = q.options() {
                let distinct: BTreeSet<&OptionKey> = options.iter().collect();
                if !(2..=50).contains(&options.len()) || distinct.len() != options.len() {
                    return Err(SurveyError::Options(q.key().to_string()));
                }
            }
        }
        Ok(())
    }

    fn question(&self, key: &QuestionKey) -> Result<&Question, SurveyError> {
        self.questions
            .iter()
            .find(|q| q.key() == key)
            .ok_or_else(|| SurveyError::UnknownQuestion(key.to_string()))
    }

    /// Checks an answer: `choices` for choice questions, and the keys of the questions
    /// answered with free text.
    pub fn check_answer<'a>(
        &self,
        choices: &Choices,
        free_texts: impl IntoIterator<Item = &'a QuestionKey>,
    ) -> Result<(), SurveyError> {
        let mut answered = 0;
        for (key, chosen) in choices {
            let question = self.question(key)?;
            let options = question
                .options()
                .ok_or_else(|| SurveyError::NotAChoice(key.to_string()))?;
            if chosen.is_empty() || !chosen.iter().all(|o| options.contains(o)) {
                return Err(SurveyError::UnknownOption(key.to_string()));
            }
            if chosen.iter().collect::<BTreeSet<_>>().len() != chosen.len() {
                return Err(SurveyError::RepeatedOption(key.to_string()));
            }
            if matches!(question, Question::Single { .. }) && chosen.len() != 1 {
                return Err(SurveyError::SingleChoice(key.to_string()));
            }
            answered += 1;
        }
        for key in free_texts {
            match self.question(key)? {
                Question::FreeText { .. } if !choices.contains_key(key) => answered += 1,
                _ => return Err(SurveyError::NotFreeText(key.to_string())),
            }
        }
        if answered == 0 {
            return Err(SurveyError::Empty);
        }
        Ok(())
    }
}

/// The results of a survey: for each choice question, how often each option was chosen
/// (options nobody chose count 0), and how many answers there were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Results {
    pub answers: u64,
    pub counts: BTreeMap<QuestionKey, BTreeMap<OptionKey, u64>>,
}

/// Counts the choices of `answers` (the answers that count: not withdrawn, not hidden).
pub fn tally<'a>(survey: &Survey, answers: impl IntoIterator<Item = &'a Choices>) -> Results {
    let mut counts: BTreeMap<QuestionKey, BTreeMap<OptionKey, u64>> = survey
        .questions
        .iter()
        .filter_map(|q| {
            let options = q.options()?;
            Some((
                q.key().clone(),
                options.iter().map(|o| (o.clone(), 0)).collect(),
            ))
        })
        .collect();
    let mut total = 0;
    for answer in answers {
        total += 1;
        for (key, chosen) in answer {
            if let Some(per_option) = counts.get_mut(key) {
                for option in chosen {
                    if let Some(n) = per_option.get_mut(option) {
                        *n += 1;
                    }
                }
            }
        }
    }
    Results {
        answers: total,
        counts,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn q(s: &str) -> QuestionKey {
        QuestionKey::parse(s).expect("question key")
    }

    pub fn o(s: &str) -> OptionKey {
        OptionKey::parse(s).expect("option key")
    }

    pub fn survey() -> Survey {
        serde_json::from_str(
            r#"{"questions":[
                {"kind":"single","key":"radweg","text":"Soll der Radweg gebaut werden?","options":["ja","nein"]},
                {"kind":"multiple","key":"ziele","text":"Welche Ziele sind Ihnen wichtig?","options":["laerm","gruen","parken"]},
                {"kind":"free_text","key":"hinweise","text":"Weitere Hinweise"}
            ]}"#,
        )
        .expect("survey")
    }

    pub fn choices(list: &[(&str, &[&str])]) -> Choices {
        list.iter()
            .map(|(k, options)| (q(k), options.iter().map(|s| o(s)).collect()))
            .collect()
    }

    #[test]
    fn a_survey_has_distinct_questions_with_distinct_options() {
        assert_eq!(survey().check(), Ok(()));
        assert_eq!(
            Survey { questions: vec![] }.check(),
            Err(SurveyError::Questions)
        );
        let mut twice = survey();
        twice.questions.push(twice.questions[0].clone());
        assert_eq!(twice.check(), Err(SurveyError::Questions));
        let one_option = Survey {
            questions: vec![Question::Single {
                key: q("a"),
                text: Title::parse("A?").expect("title"),
                options: vec![o("ja")],
            }],
        };
        assert_eq!(one_option.check(), Err(SurveyError::Options("a".into())));
        let repeated = Survey {
            questions: vec![Question::Multiple {
                key: q("a"),
                text: Title::parse("A?").expect("title"),
                options: vec![o("ja"), o("ja")],
            }],
        };
        assert_eq!(repeated.check(), Err(SurveyError::Options("a".into())));
        assert!(serde_json::from_str::<Survey>(
            r#"{"questions":[{"kind":"free_text","key":"a","text":"A","options":["x","y"]}]}"#
        )
        .is_err());
    }

    #[test]
    fn answers_are_checked_against_the_questions() {
        let s = survey();
        let none: [&QuestionKey; 0] = [];
        assert_eq!(
            s.check_answer(&choices(&[("radweg", &["ja"])]), none),
            Ok(())
        );
        assert_eq!(
            s.check_answer(
                &choices(&[("ziele", &["laerm", "gruen"])]),
                [&q("hinweise")]
            ),
            Ok(())
        );
        assert_eq!(s.check_answer(&Choices::new(), [&q("hinweise")]), Ok(()));
        assert_eq!(
            s.check_answer(&Choices::new(), none),
            Err(SurveyError::Empty)
        );
        // A repeated option is refused, not dropped; the order sent is kept.
        assert_eq!(
            s.check_answer(&choices(&[("ziele", &["gruen", "laerm", "laerm"])]), none),
            Err(SurveyError::RepeatedOption("ziele".into()))
        );
        assert_eq!(
            s.check_answer(&choices(&[("radweg", &["ja", "ja"])]), none),
            Err(SurveyError::RepeatedOption("radweg".into()))
        );
        assert_eq!(
            choices(&[("ziele", &["laerm", "gruen"])])[&q("ziele")],
            [o("laerm"), o("gruen")]
        );
        assert_eq!(
            s.check_answer(&choices(&[("radweg", &["ja", "nein"])]), none),
            Err(SurveyError::SingleChoice("radweg".into()))
        );
        assert_eq!(
            s.check_answer(&choices(&[("radweg", &["vielleicht"])]), none),
            Err(SurveyError::UnknownOption("radweg".into()))
        );
        assert_eq!(
            s.check_answer(&choices(&[("ziele", &[])]), none),
            Err(SurveyError::UnknownOption("ziele".into()))
        );
        assert_eq!(
            s.check_answer(&choices(&[("farbe", &["rot"])]), none),
            Err(SurveyError::UnknownQuestion("farbe".into()))
        );
        assert_eq!(
            s.check_answer(&choices(&[("hinweise", &["ja"])]), none),
            Err(SurveyError::NotAChoice("hinweise".into()))
        );
        assert_eq!(
            s.check_answer(&Choices::new(), [&q("radweg")]),
            Err(SurveyError::NotFreeText("radweg".into()))
        );
    }

    #[test]
    fn results_count_choices_without_identities() {
        let answers = [
            choices(&[("radweg", &["ja"]), ("ziele", &["laerm", "gruen"])]),
            choices(&[("radweg", &["ja"])]),
            choices(&[("radweg", &["nein"]), ("ziele", &["gruen"])]),
        ];
        let results = tally(&survey(), &answers);
        assert_eq!(results.answers, 3);
        assert_eq!(
            serde_json::to_value(&results.counts).expect("json"),
            serde_json::json!({
                "radweg": {"ja": 2, "nein": 1},
                "ziele": {"gruen": 2, "laerm": 1, "parken": 0}
            })
        );
    }
}
